"""plantstage.parity"""
