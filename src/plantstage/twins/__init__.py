"""plantstage.twins"""
