"""cellextract.previews"""
