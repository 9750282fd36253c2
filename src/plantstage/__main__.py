from plantstage.cli import main

main()
