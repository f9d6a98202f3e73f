"""A procedurally drawn black-and-white cartoon in the style of Steamboat Willie (1928).

The offline demo and the tests' corpus: a real H.264 MP4 that exercises what the preprocess
stage handles. The 4:3 picture sits between pure black pillarbox bars (`PICTURE_BOX`); the
film is a few scenes joined by hard cuts (`SyntheticFilm.cut_frames`); inside a scene things
move (a steamboat bobbing on scrolling waves, its paddle wheel turning and stacks puffing
smoke, a mouse walking along a pier or swaying at the helm); and every frame gets the
grain, flicker, dust and scratches of an old print.

Everything follows from the seed — scene order and lengths, positions, speeds, tones, grain —
so the same seed gives the same frames and, through `write_mp4`, the same bytes. The MP4 has a
soundtrack (`willie.data.soundtrack`): a whistle toots as each smoke puff leaves a stack, the
mouse whistles a tune at the helm, and the sound cuts where the picture cuts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw

from willie.data.soundtrack import SceneSound, render_soundtrack
from willie.data.video import write_mp4
from willie.errors import WillieError

FRAME_WIDTH, FRAME_HEIGHT = 384, 240
AUDIO_RATE = 24_000  # the soundtrack's sample rate in the MP4 (AAC, mono)
# x, y, width, height of the 4:3 picture; columns outside it are the pure black (0) bars.
PICTURE_BOX = (32, 0, 320, 240)
SCENE_SECONDS = 3.0  # a cut every 2.3–3.8 s: 24 s show every kind of scene twice
INK = 0  # outlines and solid black shapes
# Grain is costly to encode: at crf 23 24 s take ~2 MB and ~3 s of x264, half of crf 18's.
CRF = 23

Point = tuple[float, float]
Draw = ImageDraw.ImageDraw


@dataclass(frozen=True)
class SyntheticFilm:
    path: Path
    frames: int
    fps: int
    width: int
    height: int
    picture_box: tuple[int, int, int, int]  # x, y, width, height of the picture inside the bars
    cut_frames: tuple[int, ...]  # index of the first frame of each scene after the first
    audio_rate: int  # of its AAC soundtrack


# --- drawing primitives -------------------------------------------------------------------


@dataclass(frozen=True)
class Pose:
    """Places a figure drawn in local units: local (0, 0) lands on (x, y), scaled and tilted."""

    x: float
    y: float
    scale: float = 1.0
    angle: float = 0.0  # radians, clockwise on screen

    def __call__(self, lx: float, ly: float) -> Point:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (self.x + self.scale * (lx * c - ly * s), self.y + self.scale * (lx * s + ly * c))

    def points(self, local: Sequence[Point]) -> list[Point]:
        return [self(lx, ly) for lx, ly in local]

    def width(self, local_width: float) -> int:
        return max(1, round(local_width * self.scale))

    def ellipse(
        self,
        draw: Draw,
        lx: float,
        ly: float,
        rx: float,
        ry: float,
        fill: int | None,
        outline: int | None = INK,
        width: float = 1.5,
    ) -> None:
        """An axis-aligned ellipse centred on local (lx, ly); the tilt moves only its centre."""
        x, y = self(lx, ly)
        box = (x - rx * self.scale, y - ry * self.scale, x + rx * self.scale, y + ry * self.scale)
        draw.ellipse(box, fill=fill, outline=outline, width=self.width(width))


def _ellipse(
    draw: Draw,
    center: Point,
    rx: float,
    ry: float,
    fill: int | None,
    outline: int | None = INK,
    width: int = 2,
) -> None:
    x, y = center
    draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill, outline=outline, width=width)


def draw_blob(
    draw: Draw, circles: Sequence[tuple[float, float, float]], fill: int, width: int
) -> None:
    """Circles (x, y, r) merged into one shape with a single outline around their union."""
    for x, y, r in circles:
        _ellipse(draw, (x, y), r + width, r + width, fill=INK, outline=None)
    for x, y, r in circles:
        _ellipse(draw, (x, y), r, r, fill=fill, outline=None)


# --- scenery ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveRow:
    """One row of cusped cartoon waves; crests point up, the row scrolls sideways."""

    y: float  # height of the crests
    amplitude: float
    wavelength: float
    speed: float  # px/s, positive scrolls rightwards
    phase: float
    tone: int


def wave_rows(
    rng: np.random.Generator, *, top: float, bottom: float, count: int, tone: int, speed: float
) -> list[WaveRow]:
    """Rows from the horizon to the front, bigger and faster towards the viewer (parallax)."""
    rows = []
    for i in range(count):
        depth = (i + 0.5) / count
        rows.append(
            WaveRow(
                y=top + (bottom - top) * depth**1.3,
                amplitude=2 + 9 * depth,
                wavelength=14 + 46 * depth,
                speed=speed * (0.3 + depth),
                phase=float(rng.uniform(0, math.pi)),
                tone=tone + (12 if i % 2 else 0),
            )
        )
    return rows


def draw_waves(draw: Draw, rows: Sequence[WaveRow], t: float, width: int, bottom: int) -> None:
    """Draw rows back to front; each covers the water below its crests with its own tone."""
    xs = np.arange(-4.0, width + 8.0, 3.0)
    for row in rows:
        ys = row.y + row.amplitude * np.abs(
            np.sin(math.pi * (xs - row.speed * t) / row.wavelength + row.phase)
        )
        crest = list(zip(xs.tolist(), ys.tolist(), strict=True))
        draw.polygon([*crest, (xs[-1], bottom), (xs[0], bottom)], fill=row.tone)
        draw.line(crest, fill=INK, width=1 if row.amplitude < 6 else 2)


def draw_shore(
    draw: Draw, *, horizon: float, scroll: float, tone: int, width: int, phases: Sequence[float]
) -> None:
    """Rolling hills with lollipop trees on the far bank, scrolled `scroll` px leftwards."""

    def ridge(x: np.ndarray) -> np.ndarray:
        u = x + scroll
        return horizon - 16 - 9 * np.sin(u / 27 + phases[0]) - 6 * np.sin(u / 11 + phases[1])

    xs = np.arange(-4.0, width + 8.0, 4.0)
    outline = list(zip(xs.tolist(), ridge(xs).tolist(), strict=True))
    draw.polygon([*outline, (xs[-1], horizon), (xs[0], horizon)], fill=tone, outline=INK)
    spacing = 57.0
    for k in range(math.floor(scroll / spacing), math.ceil((scroll + width) / spacing) + 1):
        x = k * spacing - scroll + 19 * math.sin(k * 1.7 + phases[2])
        h = 12 + 5 * math.sin(k * 2.3 + phases[1])
        base = float(ridge(np.array(x))) + 3  # planted just below the ridge line
        draw.line([(x, base), (x, base - h)], fill=INK, width=2)
        _ellipse(draw, (x, base - h - 6), 7, 7, fill=tone - 35, width=1)


def draw_cloud(draw: Draw, x: float, y: float, size: float, tone: int) -> None:
    draw_blob(
        draw,
        [
            (x - size, y + 0.2 * size, 0.6 * size),
            (x, y - 0.2 * size, 0.85 * size),
            (x + size, y + 0.2 * size, 0.6 * size),
            (x + 0.4 * size, y + 0.4 * size, 0.55 * size),
        ],
        fill=tone,
        width=2,
    )


@dataclass(frozen=True)
class Cloud:
    x: float
    y: float
    size: float
    speed: float  # px/s

    def draw(self, draw: Draw, t: float, width: int, tone: int) -> None:
        span = width + 6 * self.size
        x = (self.x + self.speed * t) % span - 3 * self.size
        draw_cloud(draw, x, self.y, self.size, tone)


def random_clouds(
    rng: np.random.Generator, count: int, *, width: int, top: float, bottom: float
) -> list[Cloud]:
    return [
        Cloud(
            x=float(rng.uniform(0, width)),
            y=float(rng.uniform(top, bottom)),
            size=float(rng.uniform(10, 18)),
            speed=float(rng.uniform(-6, 6)),
        )
        for _ in range(count)
    ]


# --- the steamboat ------------------------------------------------------------------------

# Local units: waterline amidships at (0, 0), bow to the right, y down; about 180 × 100.
BOAT_HULL = [(-72, -20), (72, -20), (96, -34), (88, -16), (66, 5), (-62, 5), (-74, -8)]
BOAT_STACK_XS = (-40, -17)
BOAT_STACK_TOP = -100
BOAT_STACK_LEAN = 7  # tops lean back towards the stern
BOAT_WHEEL = (-88.0, -10.0, 24.0)  # stern wheel centre x, y and radius


def boat_stack_tops() -> list[Point]:
    return [(x - BOAT_STACK_LEAN, BOAT_STACK_TOP - 3) for x in BOAT_STACK_XS]


def draw_paddle_wheel(draw: Draw, center: Point, radius: float, angle: float) -> None:
    """Rim, hub, eight spokes and the paddle boards on them; `angle` turns it clockwise."""
    cx, cy = center
    line = max(1, round(radius / 12))
    _ellipse(draw, center, radius, radius, fill=None, width=line + 1)
    _ellipse(draw, center, 0.55 * radius, 0.55 * radius, fill=None, width=line)
    for k in range(8):
        a = angle + k * math.pi / 4
        c, s = math.cos(a), math.sin(a)
        draw.line([center, (cx + radius * c, cy + radius * s)], fill=INK, width=line)
        # the paddle board: a short thick bar across the end of the spoke
        bx, by = cx + 0.88 * radius * c, cy + 0.88 * radius * s
        hx, hy = -s * 0.2 * radius, c * 0.2 * radius
        draw.line([(bx - hx, by - hy), (bx + hx, by + hy)], fill=INK, width=3 * line)
        draw.line(
            [(bx - 0.8 * hx, by - 0.8 * hy), (bx + 0.8 * hx, by + 0.8 * hy)],
            fill=200,
            width=max(1, line),
        )
    _ellipse(draw, center, 0.14 * radius, 0.14 * radius, fill=INK)


def draw_stack(draw: Draw, pose: Pose, x: float, base: float, top: float, lean: float) -> None:
    """A smokestack: a leaning dark tube with a black crown and a pale band."""
    half = 6
    body = [(x - half, base), (x + half, base), (x + half - lean, top), (x - half - lean, top)]
    draw.polygon(pose.points(body), fill=70, outline=INK, width=pose.width(2))
    band_y = top + 0.25 * (base - top)
    band_dx = lean * (base - band_y) / (base - top) - lean
    band = [(x - half + band_dx, band_y), (x + half + band_dx, band_y)]
    draw.line(pose.points(band), fill=220, width=pose.width(3))
    crown = [
        (x - half - lean - 2, top),
        (x + half - lean + 2, top),
        (x + half - lean + 1, top + 8),
        (x - half - lean - 1, top + 8),
    ]
    draw.polygon(pose.points(crown), fill=INK)


def draw_boat(draw: Draw, pose: Pose, wheel_angle: float) -> None:
    """The sternwheeler: hull, cabin, wheelhouse, two leaning stacks and the stern wheel."""
    wx, wy, wr = BOAT_WHEEL
    draw_paddle_wheel(draw, pose(wx, wy), wr * pose.scale, wheel_angle)
    for x in BOAT_STACK_XS:
        draw_stack(draw, pose, x, -44, BOAT_STACK_TOP, BOAT_STACK_LEAN)
    line = pose.width(2)
    draw.polygon(
        pose.points([(-58, -44), (50, -44), (50, -20), (-58, -20)]),
        fill=215,
        outline=INK,
        width=line,
    )
    for k in range(5):
        pose.ellipse(draw, -45 + 21 * k, -32, 4, 4, fill=INK, outline=None)
    draw.polygon(pose.points([(-64, -49), (56, -49), (56, -44), (-64, -44)]), fill=INK)
    draw.polygon(
        pose.points([(8, -66), (38, -66), (38, -49), (8, -49)]), fill=225, outline=INK, width=line
    )
    draw.polygon(pose.points([(14, -62), (32, -62), (32, -54), (14, -54)]), fill=INK)
    draw.polygon(pose.points([(4, -70), (42, -70), (42, -66), (4, -66)]), fill=INK)
    draw.polygon(pose.points(BOAT_HULL), fill=235, outline=INK, width=line)
    draw.line(pose.points([(-73, -11), (80, -11), (92, -24)]), fill=INK, width=pose.width(3))
    # a flagpole at the bow with a pennant
    draw.line(pose.points([(70, -20), (70, -58)]), fill=INK, width=line)
    draw.polygon(pose.points([(70, -58), (86, -54), (70, -50)]), fill=INK)


# --- smoke --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Smoke:
    """Puffs leave the stacks every `interval` s, rise, drift with the wind, swell and pale."""

    interval: float
    life: float
    rise: float  # px/s upwards
    wind: float  # px/s sideways
    radius: tuple[float, float]  # at birth, at the end of its life
    tone: tuple[int, int]  # at birth, at the end of its life
    jitter: np.ndarray  # [64, 3, 3]: per puff, per circle (dx, dy, r) in units of the radius

    @staticmethod
    def random(rng: np.random.Generator, scale: float) -> Smoke:
        jitter = rng.uniform(-1, 1, size=(64, 3, 3)) * np.array([0.8, 0.5, 0.25])
        jitter[..., 2] += 0.9
        return Smoke(
            interval=float(rng.uniform(0.3, 0.45)),
            life=float(rng.uniform(1.8, 2.6)),
            rise=float(rng.uniform(22, 34)) * scale,
            wind=float(rng.uniform(-14, -6)) * scale,
            radius=(4 * scale, 17 * scale),
            tone=(95, 225),
            jitter=jitter,
        )


def draw_smoke(
    draw: Draw, smoke: Smoke, source: Callable[[float, int], Point], t: float, scale: float
) -> None:
    """Draw the puffs alive at time t, oldest first; `source(t, k)` is where puff k is born."""
    first = math.floor((t - smoke.life) / smoke.interval) + 1
    for k in range(first, math.floor(t / smoke.interval) + 1):
        born = k * smoke.interval
        age = (t - born) / smoke.life
        if age > 1:
            continue
        x0, y0 = source(born, k)
        x = x0 + smoke.wind * (t - born)
        y = y0 - smoke.rise * (t - born)
        r = smoke.radius[0] + (smoke.radius[1] - smoke.radius[0]) * math.sqrt(age)
        tone = round(smoke.tone[0] + (smoke.tone[1] - smoke.tone[0]) * age)
        circles = [(x + dx * r, y + dy * r, dr * r) for dx, dy, dr in smoke.jitter[k % 64]]
        draw_blob(draw, circles, fill=tone, width=max(1, round(1.5 * scale)))


# --- the mouse ----------------------------------------------------------------------------


def draw_mouse(draw: Draw, pose: Pose, stride_phase: float, *, holding: bool = False) -> None:
    """A 1928-style mouse in profile facing right: feet at local (0, 0), about 90 units tall.

    Black round head and round ears, a pale face with a long snout and pie eyes, black body,
    shorts with two buttons, rubber-hose limbs, a thin wagging tail; legs and arms swing with
    `stride_phase`. `holding` puts both hands forward, gripping something at chest height.
    """
    bob = -1.5 * abs(math.sin(stride_phase))
    limb = 2.5

    tail = [
        (-8 - 30 * s, -30 + bob + 8 * s - 5 * math.sin(3 * math.pi * s + stride_phase))
        for s in np.linspace(0, 1, 16).tolist()
    ]
    draw.line(pose.points(tail), fill=INK, width=pose.width(1.5), joint="curve")

    def leg(phase: float) -> None:
        foot_x = 11 * math.sin(phase)
        lift = 4 * max(0.0, math.cos(phase))
        hip = (-1 + 0.3 * foot_x, -22 + bob)
        draw.line(pose.points([hip, (foot_x, -4 - lift)]), fill=INK, width=pose.width(limb))
        pose.ellipse(draw, foot_x + 4, -4 - lift, 8, 4, fill=170)

    def arm(phase: float, grip: Point) -> None:
        shoulder = (1, -44 + bob)
        if holding:
            hand = grip
        else:
            swing = 0.8 * math.sin(phase)
            hand = (shoulder[0] + 14 * math.sin(swing), shoulder[1] + 14 * math.cos(swing))
        elbow = ((shoulder[0] + hand[0]) / 2 - 2, (shoulder[1] + hand[1]) / 2 + 2)
        draw.line(
            pose.points([shoulder, elbow, hand]), fill=INK, width=pose.width(limb), joint="curve"
        )
        pose.ellipse(draw, *hand, 3.5, 3.5, fill=235, width=1)

    leg(stride_phase + math.pi)
    arm(stride_phase, (24, -47))
    pose.ellipse(draw, 0, -37 + bob, 9, 14, fill=INK, outline=None)
    shorts = [(-10, -35 + bob), (10, -35 + bob), (11, -21 + bob), (-11, -21 + bob)]
    draw.polygon(pose.points(shorts), fill=140, outline=INK, width=pose.width(1.5))
    for bx in (3, 8):
        pose.ellipse(draw, bx, -30 + bob, 1.8, 1.8, fill=245, outline=None)
    leg(stride_phase)

    for ex, ey in ((-9, -76), (7, -78)):  # the ears: two black discs, whichever way he turns
        pose.ellipse(draw, ex, ey + bob, 8, 8, fill=INK, outline=None)
    pose.ellipse(draw, 2, -62 + bob, 12, 12, fill=INK, outline=None)
    # pale face mask and snout, outlined as one shape
    face = [(11, -59 + bob, 8, 8), (19, -56 + bob, 8, 4)]
    for x, y, rx, ry in face:
        pose.ellipse(draw, x, y, rx + 1.5, ry + 1.5, fill=INK, outline=None)
    for x, y, rx, ry in face:
        pose.ellipse(draw, x, y, rx, ry, fill=225, outline=None)
    pose.ellipse(draw, 27, -57 + bob, 3.5, 3.2, fill=INK, outline=None)
    pose.ellipse(draw, 11, -66 + bob, 3.2, 5.5, fill=245, width=1)
    pose.ellipse(draw, 12, -65 + bob, 1.8, 3.5, fill=INK, outline=None)
    mouth = [(13, -54 + bob), (18, -51.5 + bob), (23, -53 + bob)]
    draw.line(pose.points(mouth), fill=INK, width=pose.width(1.2))
    arm(stride_phase + math.pi, (27, -42))


# --- the wheelhouse -----------------------------------------------------------------------


def draw_ship_wheel(draw: Draw, center: Point, radius: float, angle: float) -> None:
    """A ship's wheel seen face on: wooden rim, eight spokes running out to knobbed handles."""
    cx, cy = center
    for k in range(8):
        a = angle + k * math.pi / 4
        c, s = math.cos(a), math.sin(a)
        draw.line([center, (cx + 1.3 * radius * c, cy + 1.3 * radius * s)], fill=INK, width=5)
        _ellipse(draw, (cx + 1.3 * radius * c, cy + 1.3 * radius * s), 5, 5, fill=INK, outline=None)
    _ellipse(draw, center, radius, radius, fill=None, width=9)
    _ellipse(draw, center, radius - 2, radius - 2, fill=None, outline=150, width=4)
    _ellipse(draw, center, 0.22 * radius, 0.22 * radius, fill=150, width=3)


def draw_life_ring(draw: Draw, center: Point, radius: float) -> None:
    _ellipse(draw, center, radius, radius, fill=235, width=2)
    cx, cy = center
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    for start in (20, 110, 200, 290):
        draw.pieslice(box, start, start + 40, fill=INK)
    _ellipse(draw, center, 0.55 * radius, 0.55 * radius, fill=90, width=2)


# --- scenes -------------------------------------------------------------------------------


class ScenePainter(Protocol):
    """One shot; built from the scene's own rng, the picture size and the scene's length."""

    def __init__(
        self, rng: np.random.Generator, width: int, height: int, seconds: float
    ) -> None: ...

    def paint(self, image: Image.Image, t: float) -> None:
        """Draw the shot as it is `t` seconds after the cut, over the whole of `image`."""


def _tone(rng: np.random.Generator, base: int) -> int:
    return base + int(rng.integers(-8, 9))


class RiverScene:
    """Wide shot: the steamboat steams along the river past rolling hills, smoke trailing."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, seconds: float) -> None:
        self.width, self.height = width, height
        self.sky, self.hills, self.water = _tone(rng, 205), _tone(rng, 160), _tone(rng, 130)
        self.horizon = float(rng.uniform(90, 135))  # the camera's height varies by scene
        self.clouds = random_clouds(rng, 3, width=width, top=18, bottom=self.horizon - 45)
        self.phases = rng.uniform(0, 2 * math.pi, 3).tolist()
        self.scroll_speed = float(rng.uniform(8, 16))
        self.boat_speed = float(rng.uniform(6, 18))
        self.boat_x = float(rng.uniform(0.35, 0.5)) * width - self.boat_speed * seconds / 2
        self.boat_y = float(rng.uniform(180, 195))
        self.scale = float(rng.uniform(0.8, 0.95))
        self.bob = float(rng.uniform(1.2, 1.8))  # s per bob
        self.back = wave_rows(
            rng, top=self.horizon, bottom=self.boat_y - 10, count=4, tone=self.water, speed=-25
        )
        self.front = wave_rows(
            rng, top=self.boat_y - 2, bottom=height, count=3, tone=self.water - 10, speed=-60
        )
        self.front = [replace(r, amplitude=r.amplitude + 3) for r in self.front]
        self.smoke = Smoke.random(rng, self.scale)

    def boat_pose(self, t: float) -> Pose:
        phase = 2 * math.pi * t / self.bob
        return Pose(
            self.boat_x + self.boat_speed * t,
            self.boat_y + 2.5 * math.sin(phase),
            self.scale,
            0.035 * math.sin(phase + 1.0),
        )

    def paint(self, image: Image.Image, t: float) -> None:
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, self.width, self.height), fill=self.sky)
        for cloud in self.clouds:
            cloud.draw(draw, t, self.width, 240)
        draw_shore(
            draw,
            horizon=self.horizon,
            scroll=self.scroll_speed * t,
            tone=self.hills,
            width=self.width,
            phases=self.phases,
        )
        draw_waves(draw, self.back, t, self.width, self.height)
        tops = boat_stack_tops()
        draw_smoke(
            draw, self.smoke, lambda born, k: self.boat_pose(born)(*tops[k % 2]), t, self.scale
        )
        draw_boat(draw, self.boat_pose(t), wheel_angle=2.6 * t)
        draw_waves(draw, self.front, t, self.width, self.height)


class PierScene:
    """The mouse walks the length of a pier; the steamboat puffs along the far horizon."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, seconds: float) -> None:
        self.width, self.height = width, height
        self.sky, self.water, self.deck = _tone(rng, 140), _tone(rng, 90), _tone(rng, 200)
        self.horizon = float(rng.uniform(70, 115))  # the camera's height varies by scene
        self.clouds = random_clouds(rng, 2, width=width, top=15, bottom=self.horizon - 40)
        self.waves = wave_rows(
            rng,
            top=self.horizon,
            bottom=215,
            count=6,
            tone=self.water,
            speed=float(rng.uniform(-40, -20)),
        )
        self.deck_top = self.horizon + float(rng.uniform(50, 75))
        self.scale = float(rng.uniform(1.15, 1.35))
        self.step_rate = float(rng.uniform(1.6, 2.2))  # strides per second
        # px/s to cross the whole picture, entering and leaving, within about the scene
        self.walk_speed = (width + 80) / seconds * float(rng.uniform(0.8, 1.1))
        self.walk_start = -40 + float(rng.uniform(0, 0.15)) * width
        self.boat_x = float(rng.uniform(0.2, 0.8)) * width
        self.boat_speed = float(rng.uniform(-8, 8))
        self.boat_scale = float(rng.uniform(0.28, 0.36))
        self.smoke = Smoke.random(rng, self.boat_scale)
        self.post_offset = float(rng.uniform(0, 60))

    def boat_pose(self, t: float) -> Pose:
        return Pose(
            self.boat_x + self.boat_speed * t, self.horizon + 6 + math.sin(2 * t), self.boat_scale
        )

    def paint(self, image: Image.Image, t: float) -> None:
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, self.width, self.height), fill=self.sky)
        for cloud in self.clouds:
            cloud.draw(draw, t, self.width, 190)
        draw.rectangle((0, self.horizon, self.width, self.height), fill=self.water)
        tops = boat_stack_tops()
        draw_smoke(
            draw, self.smoke, lambda born, k: self.boat_pose(born)(*tops[k % 2]), t, self.boat_scale
        )
        draw_boat(draw, self.boat_pose(t), wheel_angle=3 * t)
        draw_waves(draw, self.waves[:-1], t, self.width, self.height)
        top, front = self.deck_top, self.deck_top + 14
        # the posts stand in the water: only the front row of waves passes before them
        for x in np.arange(self.post_offset - 60, self.width + 60, 64):
            draw.rectangle((x, front, x + 14, self.height), fill=60, outline=INK, width=2)
        draw_waves(draw, self.waves[-1:], t, self.width, self.height)
        draw.rectangle((-2, top, self.width + 2, front), fill=self.deck, outline=INK, width=2)
        draw.rectangle(
            (-2, front, self.width + 2, front + 10), fill=self.deck - 60, outline=INK, width=2
        )
        for x in np.arange(self.post_offset % 24, self.width, 24):
            draw.line([(x, front), (x, front + 10)], fill=INK, width=1)
        x = self.walk_start + self.walk_speed * t
        stride = 2 * math.pi * self.step_rate * t
        draw_mouse(draw, Pose(x, top + 6, self.scale), stride)


class PaddleCloseUp:
    """Close-up at dusk: the big paddle wheel churning against the hull, a stack belching smoke."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, seconds: float) -> None:
        self.width, self.height = width, height
        self.sky, self.hills, self.hull = _tone(rng, 60), _tone(rng, 95), _tone(rng, 228)
        self.clouds = random_clouds(rng, 2, width=width, top=20, bottom=70)
        self.phases = rng.uniform(0, 2 * math.pi, 3).tolist()
        self.deck = float(rng.uniform(118, 128))
        self.wheel = (float(rng.uniform(95, 130)), float(rng.uniform(175, 190)))
        self.radius = float(rng.uniform(74, 84))
        self.spin = float(rng.uniform(2.2, 3.2))  # rad/s
        self.stack_x = float(rng.uniform(235, 265))
        self.waves = wave_rows(
            rng, top=200, bottom=height, count=3, tone=_tone(rng, 110), speed=-90
        )
        self.smoke = Smoke.random(rng, 2.2)
        self.scroll_speed = float(rng.uniform(25, 40))

    def paint(self, image: Image.Image, t: float) -> None:
        draw = ImageDraw.Draw(image)
        sway = 3 * math.sin(2 * math.pi * t / 1.7)  # the camera rides the boat
        draw.rectangle((0, 0, self.width, self.height), fill=self.sky)
        for cloud in self.clouds:
            cloud.draw(draw, t, self.width, 120)
        draw_shore(
            draw,
            horizon=self.deck + sway,
            scroll=self.scroll_speed * t,
            tone=self.hills,
            width=self.width,
            phases=self.phases,
        )
        top = self.deck + sway
        stack = Pose(self.stack_x, top, 2.2)
        draw_smoke(draw, self.smoke, lambda born, k: stack(-3, -40), t, 2.2)
        draw_stack(draw, stack, 0, 0, -38, 3)
        draw.rectangle((-2, top, self.width + 2, self.height), fill=self.hull, outline=INK, width=3)
        draw.rectangle((-2, top, self.width + 2, top + 7), fill=INK)
        for x in range(20, self.width, 52):
            _ellipse(draw, (x + 26, top + 26), 8, 8, fill=45, width=3)
        cx, cy = self.wheel
        _ellipse(
            draw, (cx, cy + sway), self.radius + 6, self.radius + 6, fill=self.hull - 60, width=3
        )
        draw_paddle_wheel(draw, (cx, cy + sway), self.radius, self.spin * t)
        draw_waves(draw, self.waves, t, self.width, self.height)


class HelmScene:
    """In the wheelhouse the mouse sways at the ship's wheel; the shore slides past the window."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, seconds: float) -> None:
        self.width, self.height = width, height
        self.wall, self.sky = _tone(rng, 80), _tone(rng, 215)
        self.window = (
            int(rng.uniform(150, 175)),
            int(rng.uniform(20, 35)),
            width - 14,
            int(rng.uniform(115, 130)),
        )
        view_w, view_h = self.window[2] - self.window[0], self.window[3] - self.window[1]
        self.view_size = (view_w, view_h)
        self.view_horizon = view_h * float(rng.uniform(0.55, 0.65))
        self.view_waves = wave_rows(
            rng, top=self.view_horizon, bottom=view_h, count=3, tone=_tone(rng, 160), speed=-45
        )
        self.phases = rng.uniform(0, 2 * math.pi, 3).tolist()
        self.scroll_speed = float(rng.uniform(30, 45))
        self.ring = (float(rng.uniform(45, 75)), float(rng.uniform(60, 80)))
        self.mouse_x = float(rng.uniform(105, 125))
        self.wheel_center = (self.mouse_x + 100, float(rng.uniform(180, 190)))
        self.turn = float(rng.uniform(2.5, 3.5))  # s per swing of the wheel
        self.beat = float(rng.uniform(1.6, 2.4))  # head bobs per second

    def paint_view(self, t: float) -> Image.Image:
        """The shore seen through the window, drawn on its own image so it stays inside."""
        view = Image.new("L", self.view_size, self.sky)
        draw = ImageDraw.Draw(view)
        w, h = self.view_size
        draw_shore(
            draw,
            horizon=self.view_horizon,
            scroll=self.scroll_speed * t,
            tone=150,
            width=w,
            phases=self.phases,
        )
        draw_waves(draw, self.view_waves, t, w, h)
        return view

    def paint(self, image: Image.Image, t: float) -> None:
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, self.width, self.height), fill=self.wall)
        for x in range(14, self.width, 28):
            draw.line([(x, 0), (x, self.height)], fill=INK, width=1)
        x0, y0, x1, y1 = self.window
        image.paste(self.paint_view(t), (x0, y0))
        draw.rectangle((x0 - 6, y0 - 6, x1 + 6, y1 + 6), outline=INK, width=9)
        draw.rectangle((x0 - 4, y0 - 4, x1 + 4, y1 + 4), outline=200, width=4)
        draw.line([((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)], fill=INK, width=4)
        draw_life_ring(draw, self.ring, 22)
        # pedestal, then the wheel, then the mouse whose hands grip its rim
        cx, cy = self.wheel_center
        draw.rectangle((cx - 9, cy, cx + 9, self.height + 2), fill=130, outline=INK, width=3)
        angle = 0.7 * math.sin(2 * math.pi * t / self.turn)
        draw_ship_wheel(draw, (cx, cy), 36, angle)
        sway = 0.35 * math.sin(2 * math.pi * self.beat * t)
        pose = Pose(
            self.mouse_x,
            self.height + 14 + 2 * abs(math.sin(math.pi * self.beat * t)),
            2.2,
            0.05 * math.sin(2 * math.pi * self.beat * t / 2),
        )
        draw_mouse(draw, pose, sway, holding=True)


SCENE_KINDS: dict[str, type[ScenePainter]] = {
    "river": RiverScene,
    "pier": PierScene,
    "paddle_closeup": PaddleCloseUp,
    "helm": HelmScene,
}


# --- the old-film look --------------------------------------------------------------------


def add_flicker(picture: np.ndarray, gain: float) -> np.ndarray:
    return picture * gain


def add_vignette(picture: np.ndarray, vignette: np.ndarray) -> np.ndarray:
    return picture * vignette


def grain_fields(
    rng: np.random.Generator, height: int, width: int, *, sigma: float, count: int = 8
) -> np.ndarray:
    """[count, H + 32, W + 32] float32 gaussian noise to cut each frame's grain from."""
    return sigma * rng.standard_normal((count, height + 32, width + 32), dtype=np.float32)


def add_grain(picture: np.ndarray, fields: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add a window of noise cut at a random place: grain anew every frame for a slice's cost."""
    count, fh, fw = fields.shape
    h, w = picture.shape
    k, y, x = rng.integers(count), rng.integers(fh - h + 1), rng.integers(fw - w + 1)
    return picture + fields[k, y : y + h, x : x + w]


def add_dust_and_scratches(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A few black dust specks on every frame, now and then a pale vertical scratch."""
    h, w = picture.shape
    for _ in range(int(rng.integers(0, 4))):
        y, x = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        picture[y : y + 2, x : x + int(rng.integers(1, 3))] = 10
    if rng.random() < 0.25:
        x = int(rng.integers(0, w))
        y0 = int(rng.integers(0, h // 2))
        picture[y0 : y0 + int(rng.integers(h // 3, h)), x] += 60
    return picture


def vignette_mask(height: int, width: int) -> np.ndarray:
    """[H, W] gain, 1 in the middle falling to ~0.8 in the corners as through an old lens."""
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    return 1 - 0.1 * (x**2 + y**2)


class OldFilm:
    """Ages drawn pictures frame by frame; a seeded stream, so call it in frame order."""

    def __init__(self, seed: int, height: int, width: int) -> None:
        self.rng = np.random.default_rng([seed, 1])
        self.vignette = vignette_mask(height, width)
        self.grain = grain_fields(self.rng, height, width, sigma=4.0)
        self.flicker = 0.0

    def age(self, picture: np.ndarray) -> np.ndarray:
        self.flicker = 0.5 * self.flicker + 0.5 * float(self.rng.normal(0, 0.035))
        aged = add_vignette(picture.astype(np.float32), self.vignette)
        aged = add_flicker(aged, 1 + self.flicker)
        aged = add_grain(aged, self.grain, self.rng)
        aged = add_dust_and_scratches(aged, self.rng)
        return np.clip(aged, 0, 255).astype(np.uint8)


# --- the film -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    kind: str  # a key of SCENE_KINDS
    start: int  # first frame in the film
    frames: int
    mirrored: bool  # drawn flipped left-right, so things travel the other way
    seed: int  # of the scene's own choices: positions, speeds, tones


def _check(seed: int, seconds: float, fps: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise WillieError(f"synthetic film: seed must be an integer ≥ 0, got {seed!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise WillieError(f"synthetic film: seconds must be > 0 (e.g. 24), got {seconds!r}")
    if not isinstance(fps, (int, np.integer)) or fps <= 0:
        raise WillieError(f"synthetic film: fps must be a positive integer (e.g. 24), got {fps!r}")


def _scene_order(rng: np.random.Generator, count: int) -> list[str]:
    """Kinds in seeded order, every kind once before any repeats, never twice in a row."""
    kinds = list(SCENE_KINDS)
    order: list[str] = []
    while len(order) < count:
        batch = [kinds[i] for i in rng.permutation(len(kinds))]
        if order and batch[0] == order[-1]:
            batch.append(batch.pop(0))
        order.extend(batch)
    return order[:count]


def plan_scenes(*, seed: int, seconds: float, fps: int = 24) -> tuple[Scene, ...]:
    """The seeded cut list: about one scene per `SCENE_SECONDS`, at least two from 4 s on.

    A kind that comes back comes back re-arranged: its own positions, speeds and tones, and
    drawn from the other side (mirrored) — the same parts in a new arrangement, so that a split
    by shot can hold one out and still test what the models learnt from the other."""
    _check(seed, seconds, fps)
    total = max(1, round(seconds * fps))
    count = 1 if seconds < 4 else max(2, round(seconds / SCENE_SECONDS))
    count = min(count, total)
    rng = np.random.default_rng(seed)
    kinds = _scene_order(rng, count)
    weights = rng.uniform(0.75, 1.25, count)
    bounds = [0, *np.round(np.cumsum(weights) / weights.sum() * total).astype(int).tolist()]
    bounds = [max(b, i) for i, b in enumerate(bounds)]  # every scene keeps ≥ 1 frame
    mirrored: dict[str, bool] = {}
    scenes = []
    for kind, start, end in zip(kinds, bounds[:-1], bounds[1:], strict=True):
        flip = bool(rng.random() < 0.5)
        mirrored[kind] = flip if kind not in mirrored else not mirrored[kind]
        scenes.append(
            Scene(
                kind=kind,
                start=start,
                frames=end - start,
                mirrored=mirrored[kind],
                seed=int(rng.integers(2**63)),
            )
        )
    return tuple(scenes)


def _painter(scene: Scene, fps: int) -> ScenePainter:
    *_, w, h = PICTURE_BOX
    return SCENE_KINDS[scene.kind](np.random.default_rng(scene.seed), w, h, scene.frames / fps)


def scene_sounds(scenes: Sequence[Scene], fps: int) -> list[SceneSound]:
    """What each scene sounds like: its stack's puffs (when each is born, as `draw_smoke`
    draws them) and, at the helm, the mouse's beat."""
    sounds = []
    for scene in scenes:
        painter = _painter(scene, fps)
        seconds = scene.frames / fps
        smoke: Smoke | None = getattr(painter, "smoke", None)
        puffs = () if smoke is None else tuple(np.arange(0, seconds, smoke.interval).tolist())
        beat = getattr(painter, "beat", None) if isinstance(painter, HelmScene) else None
        sounds.append(SceneSound(seconds, puffs, beat, scene.seed % 2**32))
    return sounds


def render_audio(*, seed: int, seconds: float, fps: int = 24, rate: int = AUDIO_RATE) -> np.ndarray:
    """The film's soundtrack: mono float in [-1, 1] at `rate` Hz, sample 0 at the first frame."""
    scenes = plan_scenes(seed=seed, seconds=seconds, fps=fps)
    return render_soundtrack(scene_sounds(scenes, fps), rate, seed)


def render_frames(*, seed: int, seconds: float, fps: int = 24) -> Iterator[np.ndarray]:
    """Yield the film's [FRAME_HEIGHT, FRAME_WIDTH] uint8 frames: the picture between bars."""
    scenes = plan_scenes(seed=seed, seconds=seconds, fps=fps)
    x, y, w, h = PICTURE_BOX
    film = OldFilm(seed, h, w)
    for scene in scenes:
        painter = _painter(scene, fps)
        for i in range(scene.frames):
            image = Image.new("L", (w, h))
            painter.paint(image, i / fps)
            picture = np.asarray(image)
            if scene.mirrored:
                picture = picture[:, ::-1]
            frame = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), np.uint8)
            frame[y : y + h, x : x + w] = film.age(picture)
            yield frame


def render_synthetic_film(
    path: str | os.PathLike[str], *, seed: int, seconds: float, fps: int = 24
) -> SyntheticFilm:
    """Draw the film and write it to `path` as H.264 MP4 with its AAC soundtrack (atomically;
    same seed, same bytes)."""
    scenes = plan_scenes(seed=seed, seconds=seconds, fps=fps)
    frames = write_mp4(
        path,
        render_frames(seed=seed, seconds=seconds, fps=fps),
        fps,
        crf=CRF,
        audio=render_audio(seed=seed, seconds=seconds, fps=fps),
        audio_rate=AUDIO_RATE,
    )
    return SyntheticFilm(
        path=Path(path),
        frames=frames,
        fps=fps,
        width=FRAME_WIDTH,
        height=FRAME_HEIGHT,
        picture_box=PICTURE_BOX,
        cut_frames=tuple(scene.start for scene in scenes[1:]),
        audio_rate=AUDIO_RATE,
    )
