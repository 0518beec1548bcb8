"""cellextract.motion"""
