"""cellextract.previews: PNG previews (matplotlib, Agg).

- :mod:`.init_images`: PNR, correlation and search images;
- :mod:`.cells`: footprints and traces of the accepted cells (raw / denoised);
- :mod:`.events`: raster, population rate, event-rate and inter-event-interval histograms;
- :mod:`.run`: ``make_previews`` / ``preview_names`` for a whole series;
- ``motion``: motion-correction previews (motion module).
"""
