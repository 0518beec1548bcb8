"""cellextract.evaluate"""
