"""Generator profiles of the synthetic NYUD-v2 set: the ranges its random scene parameters are drawn from.

``"nyu"`` is the original generator (its ranges mimic NYU's Kinect frames; same output bit for bit
for a given seed). ``"wide"`` widens the domain randomisation for sim-to-real transfer: camera
height, pitch, roll and focal length, light count / power / colour temperature, ambient light,
exposure, white balance and tone curve, material colours, clutter, and stronger, more varied
image sensor effects (blur, read + shot noise, vignetting). Labels stay exact in both: depth,
normals and edges come from the geometry, and a changed focal length is used by the ray caster and
recorded per image (``meta["intrinsics"]``; ``write_dataset`` stores it in
``<split>/intrinsics/<i>.npy``).

The ``"wide"`` ranges were set against the ten real NYUD-v2 frames of ``nyuv2-mini`` compared with
20 ``"nyu"`` synthetic frames at 288x384 (real mean (min, max) vs synthetic mean (min, max)):

* luma mean 0.48 (0.41, 0.58) vs 0.53 (0.41, 0.73); luma std 0.26 vs 0.23;
* 2nd / 98th luma percentile 0.04 / 1.00 vs 0.12 / 0.89: real frames have deep shadows and clipped
  highlights on every frame, synthetic ones neither;
* mean R/G 1.09 (0.99, 1.21) and B/G 0.96 (0.86, 1.01) vs 1.02 / 0.98: real frames are warm
  (incandescent light), synthetic ones neutral on average;
* mean |Laplacian| of luma 0.044 vs 0.063: real frames are softer (motion blur, JPEG, demosaicing);
* valid depth median 2.7 m, 5th / 95th percentiles 1.5 / 5.3 m vs 3.3 m, 1.8 / 4.3 m;
* camera pitch from the floor's depth-derived normal: about -2..+3 deg on 7 of the 8 frames that
  see the floor, -54 deg on one; roll 0..10 deg; camera height 1.2-1.35 m above the floor.

With the ranges below, 20 "wide" frames give: luma mean 0.58 (0.34, 0.75), std 0.26, saturation
0.29 (real 0.23, "nyu" 0.26), R/G 1.06 (0.81, 1.55), B/G 0.91 (0.68, 1.66), |Laplacian| 0.064
(0.038, 0.146), 2nd / 98th percentile 0.09 / 0.95, depth median 2.9 m, 5th / 95th 1.5 / 4.2 m:
wider than "nyu" on every statistic and covering the real frames' values. The training-time
photometric augmentation (``DataConfig.photometric = "wide"``) widens the image statistics further.

``"wide_walls"`` is ``"wide"`` plus what the real frames' walls carry (their label maps call printed
sheets, notice boards and whiteboards ``objects`` and doors ``wall``), off-white paint and a pitch range
centred nearer level: over 30 validation scenes at 144x192 the ``objects`` share of the labelled pixels
is 7.7 % (``"wide"``: 5.1 %; the real frames: 15.6 %), ``wall`` 38.9 % (38.0 %; real 37.4 %), ``floor``
14.5 % (18.9 %; real 4.5 %), ``ceiling`` 7.1 % (4.7 %; real 12.0 %); 30 scenes are a small sample. Its generation costs what
``"wide"``'s does (``benchmarks/bench_synthetic.py``).

Pure data (no numpy): imported by ``synthetic_layout``, ``synthetic_render`` and ``synthetic``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

Range = tuple[float, float]


@dataclass(frozen=True)
class Profile:
    """Ranges of one generator profile (uniform draws unless the name says std)."""

    name: str
    camera_height: Range
    """Camera height above the floor (metres)."""
    camera_pitch_deg: Range
    """Camera pitch (negative: looking down)."""
    camera_roll_std_deg: float
    focal_scale: Range
    """Factor on NYU's fx and fy (principal point unchanged); (1, 1): no draw."""
    light_count: tuple[int, int]
    """Ceiling lights, integers in [lo, hi)."""
    light_power: Range
    light_temperature: Range
    """Warm / cold tint t of a ceiling light: RGB intensity (1 + t, 1, 1 - t) x power."""
    ambient: Range
    exposure_target: Range
    """Auto-exposure maps the 96th luminance percentile to a display value in this range."""
    white_balance_std: float
    """Std of the log gain of each colour channel."""
    tone_gamma: Range
    """Display values x -> x ** g after exposure; (1, 1): no tone curve."""
    material_colour_std: float
    """Std of a per-material, per-channel log gain on every material colour; 0: none."""
    material_saturation: Range
    """Per-material factor on the colours' distance from their grey (used with material_colour_std)."""
    support_clutter: tuple[int, int]
    """Clutter items on tables / shelves, integers in [lo, hi)."""
    floor_clutter: tuple[int, int]
    blur_weight: Range
    """Weight of each 4-neighbour in the 5-point image blur (the centre keeps 1 - 4 w)."""
    blur_passes: tuple[int, int]
    """Times the blur is applied, integers in [lo, hi); (1, 2): always once, no draw."""
    image_noise_std: Range
    """Per-image std of additive Gaussian (read) noise."""
    shot_noise: Range
    """Per-image k of signal-dependent noise std k * sqrt(x); (0, 0): none."""
    vignetting: Range
    """Relative darkening at the image corners (x (1 - v r^2), r = 1 at a corner); (0, 0): none."""
    wall_papers: tuple[int, int] = (0, 1)
    """Loose sheets of paper (notices, signs, printouts) on the walls, integers in [lo, hi): NYU's
    13-class labels call them ``objects``; (0, 1): none, no draw."""
    board_chance: float = 0.0
    """Chance of a cork notice board with papers pinned on it and, drawn apart, of a whiteboard:
    both ``objects`` in NYU's labels; 0: neither, no draw."""
    doors: tuple[int, int] = (0, 1)
    """Doors (leaf, casing, handle, sometimes a glass pane and notices) in the walls, integers in
    [lo, hi): NYU's 13-class labels call a door ``wall`` and its glass ``window``; (0, 1): none."""
    office_paint_chance: float = 0.0
    """Chance that every wall of the room is repainted off-white (the offices, corridors and
    kitchens of NYU's frames); 0: the walls keep their paint, no draw."""

    @property
    def varies_focal(self) -> bool:
        return self.focal_scale != (1.0, 1.0)

    @property
    def dresses_walls(self) -> bool:
        """Whether the profile adds papers, boards, doors or office paint (``synthetic_layout``'s
        ``dress_walls``); the "nyu" and "wide" profiles do not, and draw nothing for it."""
        return (
            self.wall_papers[1] > 1
            or self.board_chance > 0
            or self.doors[1] > 1
            or self.office_paint_chance > 0
        )


NYU = Profile(
    name="nyu",
    camera_height=(1.0, 1.75),
    camera_pitch_deg=(-24.0, 4.0),
    camera_roll_std_deg=2.0,
    focal_scale=(1.0, 1.0),
    light_count=(1, 3),
    light_power=(4.0, 10.0),
    light_temperature=(-0.12, 0.12),
    ambient=(0.15, 0.4),
    exposure_target=(0.75, 1.0),
    white_balance_std=0.06,
    tone_gamma=(1.0, 1.0),
    material_colour_std=0.0,
    material_saturation=(1.0, 1.0),
    support_clutter=(5, 16),
    floor_clutter=(1, 5),
    blur_weight=(0.04, 0.12),
    blur_passes=(1, 2),
    image_noise_std=(0.004, 0.02),
    shot_noise=(0.0, 0.0),
    vignetting=(0.0, 0.0),
)
"""The original generator: its ranges mimic NYU's Kinect frames. Output is bit-identical to
GENERATOR_VERSION 1.0 for the same (seed, split, index)."""

WIDE = Profile(
    name="wide",
    # real frames: 1.2-1.35 m; handheld and tripod captures span roughly chest to head height
    camera_height=(0.8, 2.0),
    # real: mostly level (-2..+3 deg) with one frame at -54 deg: cover level views and steep looks down
    camera_pitch_deg=(-45.0, 10.0),
    # real: 0..10 deg of roll
    camera_roll_std_deg=4.0,
    # +-15 % focal (field of view ~49-65 deg horizontally): robustness to other cameras and crops
    focal_scale=(0.85, 1.15),
    # more and stronger / weaker lights: real scenes range from dim bedrooms to lit offices
    light_count=(1, 4),
    light_power=(2.5, 14.0),
    # real frames are warm (R/G 1.09, B/G 0.96): bias the tint warm, keep some cold light
    light_temperature=(-0.1, 0.25),
    # lower ambient floor gives the deep shadows of real frames (2nd percentile 0.04 vs 0.12)
    ambient=(0.05, 0.45),
    # above 1 the brightest pixels clip, as they do on every real frame (98th percentile 1.0)
    exposure_target=(0.8, 1.5),
    # real colour casts spread R/G 0.99-1.21, B/G 0.86-1.01
    white_balance_std=0.07,
    # real luma std 0.26 vs 0.23: a contrast-raising curve on average, lowering sometimes (g > 1
    # also raises saturation, which is already at the real level: keep it moderate)
    tone_gamma=(0.95, 1.45),
    # the palettes are class-correlated; gains of ~+-8 % break exact palette reuse (0.15 pushed
    # the mean saturation to 0.38, real 0.23)
    material_colour_std=0.08,
    # "nyu" frames are more saturated than real ones (0.26 vs 0.23; "wide"'s darker shadows and
    # tone curve raise it further): desaturate the palettes on average
    material_saturation=(0.55, 1.05),
    # real rooms are more cluttered than the "nyu" scenes
    support_clutter=(8, 26),
    floor_clutter=(2, 9),
    # real frames are softer (|Laplacian| 0.044 vs 0.063): stronger and repeated blur, and noise
    # no stronger than "nyu"'s on average (real Kinect frames are smoothed by demosaicing / JPEG),
    # but signal-dependent in part
    blur_weight=(0.06, 0.2),
    blur_passes=(1, 3),
    image_noise_std=(0.002, 0.015),
    shot_noise=(0.0, 0.02),
    # Kinect RGB frames darken towards the corners
    vignetting=(0.0, 0.35),
)
"""Wider domain randomisation for sim-to-real transfer (see the module docstring for the reasons)."""

WIDE_WALLS = replace(
    WIDE,
    name="wide_walls",
    # the real frames' walls carry what the "wide" scenes lack (measured on the ten nyuv2-mini frames
    # against the 6-epoch shipped models, results/defaults/real-frames-diagnosis.json): wall 37 % of
    # labelled pixels with 54 % recall, objects 16 % with 3 % recall, furniture predicted on 38 % of
    # the pixels where 17 % are. On those frames "objects" are mostly flat things on walls and
    # cabinets (printed notices, a cork board, a whiteboard), doors are labelled wall, and walls
    # are off-white.
    # 7 of the 8 real frames that see the floor look about level (-2..+3 deg); "wide"'s (-45, 10)
    # averages -17.5 deg, and its scenes show 19 % floor and 5 % ceiling where the real frames show
    # 4.5 % and 12 %: keep the steep looks down, centre the range nearer level
    camera_pitch_deg=(-30.0, 10.0),
    wall_papers=(2, 14),
    board_chance=0.35,
    doors=(1, 4),
    office_paint_chance=0.55,
)
"""``"wide"`` plus the walls of real rooms: papers, notice boards, whiteboards, doors, off-white paint."""

PROFILES = {p.name: p for p in (NYU, WIDE, WIDE_WALLS)}
"""Profiles by name (``generate_scene(profile=...)``, ``python -m trainer prepare --profile``)."""
DEFAULT_PROFILE = "nyu"
AUX_STREAM = 1
"""Seed-stream id of the profile's extra draws (focal length, material colours): kept apart from the
scene's stream so that the "nyu" profile, which makes none, is unchanged."""


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ValueError for an unknown one."""
    if name not in PROFILES:
        raise ValueError(f"unknown synthetic profile {name!r}; valid: {sorted(PROFILES)}")
    return PROFILES[name]
