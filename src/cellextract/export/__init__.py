"""cellextract.export: the outputs of a run.

- :mod:`.caiman_hdf5`: ``save_estimates`` / ``load_estimates`` in CaImAn's HDF5 layout;
- :mod:`.isxd`: ``export_isxd`` (cell sets raw/denoised and event sets per input file);
- :mod:`.isxd_timing`, :mod:`.isxd_header`: timing/spacing of the outputs, isxd header;
- :mod:`.metadata`: ``write_output_metadata`` (``output_metadata.json``);
- :mod:`.nwb`: ``write_nwb`` (optional NWB file, needs pynwb);
- :mod:`.run`: ``export_series``, the export step in one call.
"""
