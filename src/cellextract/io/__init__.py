"""cellextract.io"""
