"""Fuzzing DAS audio files: ``npydir.das.load_audio`` on mutated ``.npz`` and ``.wav`` files.

Beyond the store's own files, the same promise: every case ends in the audio (2-D numbers, a
positive finite samplerate, every sample readable) or :class:`npydir.errors.DASFormatError`
naming the file.  ``.npz`` archives are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from npydir.das import load_audio
from npydir.errors import DASFormatError

import _hostile

pytestmark = pytest.mark.hostile


def test_hypothesis_fuzz_audio():
    _hostile.check_hypothesis_fuzz("audio", {"DASFormatError"})


def test_atheris_fuzz_audio():
    _hostile.check_atheris_fuzz("audio")


def test_npz_member_with_an_unterminated_header(tmp_path):
    """Found by the audio fuzzer: numpy's header parser raises tokenize.TokenError for a
    member header like ``{\\r\\n``; load_audio let it escape (bug-log.md H14)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.npy", b"\x93NUMPY\x02\x00\x03\x00\x00\x00{\r\n")
        s = io.BytesIO()
        np.save(s, np.float64(10_000))
        z.writestr("samplerate.npy", s.getvalue())
    path = tmp_path / "rec.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(DASFormatError, match="rec.npz"):
        load_audio(path)


@pytest.mark.parametrize("liar", ["data", "fmt "])
def test_wav_header_claiming_gigabytes_is_a_format_error(tmp_path, liar):
    """Found by the audio fuzzer: a 67-byte .wav whose data chunk claims ~2 GB made the reader
    allocate 2 GB before noticing the file is short: MemoryError wherever the address space is
    limited (``ulimit -v``, as on many clusters), instead of DASFormatError (bug-log.md H15).
    The child caps its address space at 1 GiB above its size after imports."""
    import struct
    import subprocess
    import sys
    import textwrap

    fmt = struct.pack("<HHIIHH", 1, 2, 10_000, 40_000, 4, 16)  # PCM, 2 channels, 16 bit
    fmt_size = 0xFFFFFFF0 if liar == "fmt " else len(fmt)  # atheris found this one (bug-log.md H16)
    data_size = 0x7FFFFFF0 if liar == "data" else 16
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt
    body += b"data" + struct.pack("<I", data_size)
    body += b"\x01\x02" * 8
    path = tmp_path / "rec.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    code = textwrap.dedent(f"""
        import re, resource
        from npydir.das import load_audio
        from npydir.errors import DASFormatError
        status = open("/proc/self/status").read()
        vm = int(re.search(r"VmSize:\\s+(\\d+) kB", status).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
        try:
            load_audio({str(path)!r})
            print("ok")
        except DASFormatError as exc:
            print("DASFormatError")
        except MemoryError:
            print("MemoryError")
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, env=_hostile.child_env()
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().split() == ["DASFormatError"], out.stdout.decode()


@pytest.mark.parametrize("field", ["version", "method"])
def test_npz_with_an_unsupported_zip_feature(tmp_path, field):
    """Found by a longer audio fuzz run: zipfile raises NotImplementedError for a member that
    needs a newer zip version or an unknown compression method; load_audio let it escape
    (bug-log.md H17)."""
    import struct

    from npydir.das import save_audio

    src = tmp_path / "a.npz"
    save_audio(src, np.zeros((10, 1), "f4"), 1000.0)
    raw = bytearray(src.read_bytes())
    # "version needed to extract" / "compression method" of every local and central header
    for sig, off in ((b"PK\x03\x04", 4), (b"PK\x01\x02", 6)):
        i = raw.find(sig)
        while i >= 0:
            struct.pack_into(
                "<H",
                raw,
                i + off + (0 if field == "version" else 4),
                255 if field == "version" else 99,
            )
            i = raw.find(sig, i + 4)
    path = tmp_path / "rec.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DASFormatError, match="rec.npz"):
        load_audio(path)
