"""cellextract.params"""
