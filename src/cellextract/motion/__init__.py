"""cellextract.motion: NoRMCorre motion correction (rigid and piecewise-rigid).

Public API
----------
``run.motion_correct(reader, out_dir, name, *, motion_correct=True, pw_rigid=False,
gSig_filt=None, max_shifts=(5, 5), strides=(48, 48), overlaps=(24, 24),
max_deviation_rigid=3, border_nan='copy', niter_rig=1, upsample_factor_grid=4,
n_processes=1, chunk_frames=None) -> MotionResult``
    Stream a movie (reader, SeriesInfo, path or array) into a CaImAn memmap plus
    ``shifts.csv``, ``shifts_pw.npz``, ``template.npy``, ``mean_images.npz``, ``motion.json``.
``run.load_motion_summary(motion_dir) -> dict`` (for the preview).
Array functions: ``register.rigid_shifts``, ``register.register_spectra``,
``register.template_spectrum``, ``piecewise.patch_grid / patch_shifts / shift_field /
apply_piecewise``, ``apply.apply_rigid / apply_field / shift_cubic``,
``filters.highpass``, ``template.rigid_template``, ``params.check_params``.
"""

from cellextract.motion.run import MotionResult, load_motion_summary, motion_correct

__all__ = ["MotionResult", "load_motion_summary", "motion_correct"]
