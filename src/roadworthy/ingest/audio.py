"""Audio: check that it decodes, measure it, and make 16 kHz mono PCM WAV of it.

16 kHz mono 16-bit is what speech-to-text models (Whisper and its kin) take, so the
transcription step never has to care what the user uploaded. Decoding uses libsndfile
through soundfile (WAV, FLAC, OGG/Vorbis/Opus and, with libsndfile >= 1.1, MP3) and
resampling soxr; both are in the ``[formats]`` extra. Audio is processed in blocks so a
long file is never held in memory as float64 in full.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from ..errors import InputRejected
from ._optional import require
from .report import AudioInfo

__all__ = ["TARGET_RATE", "normalise_audio"]

TARGET_RATE = 16_000
_BLOCK = 1 << 16


def normalise_audio(data: bytes, *, kind: str, max_seconds: float) -> tuple[AudioInfo, bytes]:
    """Decode ``data`` and return its description plus the 16 kHz mono PCM_16 WAV."""
    sf = require("soundfile", "reading audio")
    soxr = require("soxr", "resampling audio")
    np = require("numpy", "processing audio")
    try:
        source: Any = sf.SoundFile(io.BytesIO(data))
    except Exception as exc:
        raise InputRejected("corrupt_file", f"{kind} audio cannot be decoded: {exc}") from None
    with source:
        rate, channels, frames = int(source.samplerate), int(source.channels), source.frames
        if rate <= 0 or channels <= 0:
            raise InputRejected("corrupt_file", "audio header has no sample rate or channels")
        if frames and frames / rate > max_seconds:
            raise InputRejected(
                "too_long", f"audio is {frames / rate:.1f} s, limit {max_seconds:.0f} s"
            )
        resampler = soxr.ResampleStream(rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
        out = io.BytesIO()
        seen = 0
        peak = 0.0
        with sf.SoundFile(
            out, "w", samplerate=TARGET_RATE, channels=1, format="WAV", subtype="PCM_16"
        ) as sink:
            try:
                while True:
                    block = source.read(_BLOCK, dtype="float32", always_2d=True)
                    last = len(block) < _BLOCK
                    seen += len(block)
                    if seen / rate > max_seconds:
                        raise InputRejected("too_long", f"audio is longer than {max_seconds} s")
                    mono = block.mean(axis=1, dtype="float32") if len(block) else block[:, 0]
                    if len(mono):
                        peak = max(peak, float(np.max(np.abs(mono))))
                    sink.write(np.clip(resampler.resample_chunk(mono, last=last), -1.0, 1.0))
                    if last:
                        break
            except InputRejected:
                raise
            except Exception as exc:
                raise InputRejected("corrupt_file", f"audio stops decoding: {exc}") from None
            out_frames = sink.frames
        if seen == 0:
            raise InputRejected("empty", "audio has no samples")
        subtype = source.subtype
        fmt = source.format
    wav = out.getvalue()
    info = AudioInfo(
        format=str(fmt),
        subtype=str(subtype) if subtype else None,
        sample_rate=rate,
        channels=channels,
        frames=seen,
        duration_s=round(seen / rate, 6),
        peak=round(peak, 6),
        out_sample_rate=TARGET_RATE,
        out_channels=1,
        out_frames=int(out_frames),
        out_bytes=len(wav),
        out_sha256=hashlib.sha256(wav).hexdigest(),
    )
    return info, wav
