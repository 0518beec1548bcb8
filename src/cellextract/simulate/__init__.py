"""cellextract.simulate"""
