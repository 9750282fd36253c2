"""plantstage.data"""
