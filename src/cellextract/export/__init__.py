"""cellextract.export"""
