"""The defects an independent test of bad input found (issue 17, item 7), each checked on the real path.

LM-coded files across torch thread counts, ``decompress`` memory against the length a header claims, signals during
a run, the mode of written files, unreadable inputs, huge samples and the wording of errors. The ``encodec`` command
runs in subprocesses wherever the process itself is what is tested (thread count at start, signals, umask).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec import audio
from codec.encodec.bitstream import EcdcError, EcdcMetadata, Segment, write_ecdc
from codec.encodec.cli import main
from codec.encodec.compress import decompress
from codec.encodec.config import EncodecConfig
from codec.encodec.file_stream import decode_blocks
from codec.encodec.model import EncodecModel
from tests.conftest import run_unprivileged

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "encodec_eval" / "data" / "default"
ENCODEC = Path(sys.executable).parent / "encodec"


def _speech(folder: Path, seconds: float, name: str = "speech.wav") -> Path:
    """The first seconds of a bundled clean-speech item, as a 16 kHz WAV."""
    wav, sr = audio.load(DATA / "speech_clean" / "cmu_arctic_a0007_16k.wav")
    path = folder / name
    sf.write(path, wav[:, : int(seconds * sr)].T, sr, subtype="PCM_16")
    return path


def _no_official_weights(folder: Path) -> dict[str, str]:
    """Variables under which no official weights are found: the shipped project model is the default."""
    return {name: str(folder / "none") for name in ("HOME", "ENCODEC_WEIGHTS", "TORCH_HOME", "HF_HOME")}


def _env(folder: Path, threads: int = 1) -> dict[str, str]:
    """The environment of an ``encodec`` run without official weights, at ``threads`` torch threads from the start."""
    return dict(os.environ, **_no_official_weights(folder), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def _encodec(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENCODEC), *args], capture_output=True, text=True, env=env, timeout=timeout)


# ---- a. LM-coded files across thread counts -------------------------------------------------------------------
def test_lm_files_decode_at_any_thread_count(tmp_path):
    """Coded at 1 thread, decoded at 2, and the reverse: the LM's probabilities must not depend on the thread count
    (before the fix both directions failed near frame 33 of 38 with the shipped model and LM)."""
    source = _speech(tmp_path, 0.5)
    files = {}
    for threads in (1, 2):
        files[threads] = tmp_path / f"coded_at_{threads}.ecdc"
        done = _encodec("-b", "12", "--lm", str(source), str(files[threads]), env=_env(tmp_path, threads))
        assert done.returncode == 0, done.stderr
    assert files[1].read_bytes() == files[2].read_bytes()
    for coded, decoded in ((1, 2), (2, 1)):
        out = tmp_path / f"coded_at_{coded}_decoded_at_{decoded}.wav"
        done = _encodec(str(files[coded]), str(out), env=_env(tmp_path, decoded))
        assert done.returncode == 0, done.stderr
        assert sf.info(out).frames == 12000  # 0.5 s at 24 kHz


def test_lm_decoding_failure_names_the_likely_causes(tmp_path):
    """A stream the LM cannot follow (here: its last bytes cut) says what usually causes it."""
    source = _speech(tmp_path, 0.5)
    coded = tmp_path / "s.ecdc"
    assert _encodec("-b", "6", "--lm", str(source), str(coded), env=_env(tmp_path)).returncode == 0
    coded.write_bytes(coded.read_bytes()[:-40])
    done = _encodec(str(coded), str(tmp_path / "out.wav"), env=_env(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "ended sooner than expected" in done.stderr and "Likely causes" in done.stderr
    assert "corrupt or truncated" in done.stderr and "other LM weights" in done.stderr
    assert not (tmp_path / "out.wav").exists()


# ---- b. decompress() memory against the claimed length --------------------------------------------------------
_MEMORY_SCRIPT = textwrap.dedent("""
    import dataclasses, resource, sys
    import numpy as np, torch
    from codec.encodec import compress, file_stream
    from codec.encodec.bitstream import EcdcMetadata, Segment, write_ecdc
    from codec.encodec.config import EncodecConfig
    from codec.encodec.model import EncodecModel

    compress.ONE_SHOT_SECONDS = 1.0  # short claims take the path of long ones, so the test runs in seconds
    file_stream.CODE_CHUNK_FRAMES = 150
    torch.manual_seed(0)
    model = EncodecModel(dataclasses.replace(EncodecConfig.encodec_eval_24khz(), n_filters=4)).eval()
    for seconds in (4, 24):
        metadata = EcdcMetadata(model.config.name, seconds * 24000, 2, False)
        codes = np.random.default_rng(seconds).integers(0, 1024, (2, seconds * 75))
        wav, _ = compress.decompress(write_ecdc(metadata, [Segment(codes, None)]), model=model)
        assert wav.shape == (1, seconds * 24000), wav.shape
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # peak so far, KiB
""")


def test_decompress_memory_stays_flat_in_the_claimed_length():
    """A file (a valid one: 150 bytes per second at 1.5 kbps) whose header claims six times the audio of another
    must not raise the peak memory by more than the audio itself: one-pass decoding grew by ~2.2 MB per claimed
    second with this tiny model (~6 MB/s with the official one: 1.4 GB for a 22.5 kB file claiming 2 minutes)."""
    done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    short_peak, long_peak = (int(line) / 1024 for line in done.stdout.split())  # MiB
    output_mib = 2 * 20 * 24000 * 4 / 2**20  # the 20 s more of float32 output, held twice while concatenated
    assert long_peak - short_peak < output_mib + 12, (short_peak, long_peak)


def test_a_bit_packed_file_too_short_for_its_claim_fails_before_decoding():
    """Two minutes claimed, one second of codes present: refused up front from the sizes alone (the streaming
    decoder would otherwise decode the second, then fail), by the Python API and the streaming path alike."""
    model = EncodecModel(dataclasses.replace(EncodecConfig.encodec_eval_24khz(), n_filters=4)).eval()
    data = write_ecdc(EcdcMetadata(model.config.name, 120 * 24000, 2, False),
                      [Segment(np.zeros((2, 120 * 75), np.int64), None)])
    truncated = data[:len(data) - 119 * 75 * 20 // 8]
    message = "the file ends early: its header claims 120.0 s of audio, whose 22500 bytes of codes would follow"
    with pytest.raises(EcdcError, match=message):
        decompress(truncated, model=model)
    with pytest.raises(EcdcError, match=message):
        next(decode_blocks(truncated, model))


# ---- c. signals -----------------------------------------------------------------------------------------------
def _long_noise(folder: Path, minutes: float) -> Path:
    """Quiet noise at 8 kHz: long enough that coding it is still running when the signal comes."""
    path = folder / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (rng.standard_normal(int(minutes * 60 * 8000)) * 0.05).astype(np.float32), 8000, subtype="PCM_16")
    return path


def _long_ecdc(folder: Path, minutes: float) -> Path:
    """A valid bit-packed file of the shipped model, random codes at 1.5 kbps (decoding it takes a while)."""
    metadata = EcdcMetadata("encodec_eval_24khz", int(minutes * 60 * 24000), 2, False)
    codes = np.random.default_rng(1).integers(0, 1024, (2, int(minutes * 60 * 75)))
    path = folder / "long.ecdc"
    path.write_bytes(write_ecdc(metadata, [Segment(codes, None)]))
    return path


def _stop_while_writing(argv: list[str], out_dir: Path, env: dict[str, str], sig: int, files: int) -> tuple[int, str]:
    """Run ``encodec`` until ``files`` temporary files exist in ``out_dir``, then send ``sig``; its status and
    stderr."""
    process = subprocess.Popen([str(ENCODEC), *argv], stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not inherited SIG_IGN
    try:
        deadline = time.monotonic() + 120
        while len(list(out_dir.iterdir())) < files and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, f"encodec ended before the signal: {process.stderr.read()}"
        assert len(list(out_dir.iterdir())) >= files, "no temporary output appeared within 120 s"
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return process.returncode, err


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_compressing_leaves_no_partial_output(tmp_path, sig, status):
    """``timeout`` (SIGTERM) and Ctrl-C (SIGINT) while the hidden ``.long.ecdc.*`` is being written: it goes, the
    status is 128 + the signal, and one line says why (no traceback)."""
    source = _long_noise(tmp_path, 10)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    returncode, err = _stop_while_writing(["--stream", "always", str(source), str(out_dir / "long.ecdc")], out_dir,
                                          _env(tmp_path), sig, files=1)
    assert returncode == status, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"encodec: stopped by {signal.Signals(sig).name}; "
                                            "unfinished outputs were removed")
    assert list(out_dir.iterdir()) == []


def test_a_signal_while_decompressing_with_rescale_removes_both_temporary_files(tmp_path):
    """-r writes a float WAV beside the output before scaling it: both go on SIGTERM, and an older output stays."""
    source = _long_ecdc(tmp_path, 10)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    previous = out_dir / "long.wav"
    previous.write_bytes(b"the previous output")
    returncode, err = _stop_while_writing(["-f", "-r", str(source), str(previous)], out_dir, _env(tmp_path),
                                          signal.SIGTERM, files=3)
    assert returncode == 143 and "Traceback" not in err, err
    assert list(out_dir.iterdir()) == [previous] and previous.read_bytes() == b"the previous output"


SIGNAL_WHILE_LOADING = textwrap.dedent("""
    import os, signal, sys
    from codec.encodec import entry

    class SignalOnImport:  # the signal arrives while the command's modules (torch among them) load
        def find_spec(self, name, path=None, target=None):
            if name == "codec.encodec.cli":
                os.kill(os.getpid(), signal.SIG{name})
            return None

    sys.meta_path.insert(0, SignalOnImport())
    sys.exit(entry.main())
""")


@pytest.mark.parametrize("name,status", [("INT", 130), ("TERM", 143)])
def test_a_signal_while_the_command_starts_is_one_line(tmp_path, name, status):
    """Ctrl-C during the seconds torch takes to load: no traceback from inside an import, one line, 128 + signal."""
    done = subprocess.run([sys.executable, "-c", SIGNAL_WHILE_LOADING.replace("{name}", name)], capture_output=True,
                          text=True, env=_env(tmp_path), timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not inherited SIG_IGN
    assert done.returncode == status, done.stderr
    assert done.stderr.strip() == f"encodec: stopped by SIG{name}; it was still starting, nothing was written"


# ---- d. file modes ----------------------------------------------------------------------------------------------
@pytest.fixture
def shipped_model_only(tmp_path, monkeypatch):
    """``main`` in this process with no official weights: the shipped project model is the default."""
    for name, value in _no_official_weights(tmp_path).items():
        monkeypatch.setenv(name, value)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_follow_the_umask_and_keep_the_mode_they_replace(tmp_path, shipped_model_only):
    """New files get 0666 less the umask (they were 0600 whatever it said); -f keeps the replaced file's mode."""
    source = _speech(tmp_path, 0.3)
    kept = tmp_path / "kept.ecdc"
    kept.write_bytes(b"older")
    os.chmod(kept, 0o604)
    umask = os.umask(0o027)
    try:
        assert main([str(source), str(tmp_path / "new.ecdc")]) == 0
        assert main([str(tmp_path / "new.ecdc"), str(tmp_path / "new.wav")]) == 0
        assert main(["-f", str(source), str(kept)]) == 0
    finally:
        os.umask(umask)
    assert _mode(tmp_path / "new.ecdc") == _mode(tmp_path / "new.wav") == 0o640
    assert _mode(kept) == 0o604 and kept.read_bytes() == (tmp_path / "new.ecdc").read_bytes()


# ---- g, e. messages for inputs that cannot be read --------------------------------------------------------------
def _denied(path: Path) -> bool:
    """Whether this process is refused reading ``path`` (root with CAP_DAC_OVERRIDE is refused almost nothing)."""
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True


def _unreadable_file(tmp_path: Path) -> Path:
    """A regular file this process may not open for reading: one of mode 000, or, for root, a kernel attribute
    without a read handler (a write-only sysfs file), which refuses even root."""
    path = _speech(tmp_path, 0.1, "secret.wav")
    os.chmod(path, 0)
    for candidate in (path, Path("/sys/bus/pci/rescan"), Path("/sys/class/zram-control/hot_remove")):
        if candidate.is_file() and _denied(candidate):
            return candidate
    pytest.skip("this process reads files of mode 000 (root), and no write-only sysfs attribute is there instead")


def _last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_permission_denied_says_so(tmp_path, capsys):
    """libsndfile reports a permission denied as "System error."; the OS's reason comes first now."""
    path = _unreadable_file(tmp_path)
    assert main([str(path), str(tmp_path / "out.ecdc")]) == 1
    assert _last_line(capsys) == f"Input file {path} cannot be read: permission denied."
    with pytest.raises(audio.AudioError, match=r"cannot be read: permission denied$"):
        audio.load(path)


def test_a_file_in_an_unreadable_folder_is_a_message_not_a_traceback(shared_tmp):
    """Was a PermissionError traceback from cli.py (``Path.exists`` raises it), for an input and for an output. Run
    as a user whom permissions bind (root searches folders of mode 000)."""
    locked = shared_tmp / "locked"
    locked.mkdir()
    source = _speech(locked, 0.1)
    readable = _speech(shared_tmp, 0.1, "readable.wav")
    readable.chmod(0o644)
    locked.chmod(0)
    env = _env(shared_tmp)
    done = run_unprivileged([str(ENCODEC), str(source), str(shared_tmp / "out.ecdc")], env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"Input file {source} cannot be read: permission denied."
    done = run_unprivileged([str(ENCODEC), str(readable), str(locked / "out.ecdc")], env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot check it (Permission denied)" in done.stderr.strip().splitlines()[-1]


def test_symlink_loops_broken_links_and_fifos_are_named(tmp_path, capsys):
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    assert main([str(loop), str(tmp_path / "out.ecdc")]) == 1
    assert _last_line(capsys) == f"Input file {loop} is a symlink loop (a link that leads back to itself)."
    broken = tmp_path / "broken.wav"
    broken.symlink_to(tmp_path / "gone.wav")
    assert main([str(broken), str(tmp_path / "out.ecdc")]) == 1
    assert _last_line(capsys) == (f"Input file {broken} is a broken symlink (to {tmp_path / 'gone.wav'}, which "
                                  "does not exist).")
    with pytest.raises(audio.AudioError, match="symlink loop"):
        audio.load(loop)
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    assert main([str(fifo), str(tmp_path / "out.ecdc")]) == 1
    assert _last_line(capsys) == f"Input file {fifo} is not a regular file (a device, FIFO or socket)."


def test_undecodable_inputs_name_the_path_once(tmp_path, capsys, shipped_model_only):
    """Was ``empty.wav: empty.wav: cannot read audio (Error opening 'empty.wav': ...)``."""
    empty, garbage = tmp_path / "empty.wav", tmp_path / "garbage.wav"
    empty.write_bytes(b"")
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    for path, message in ((empty, "the file is empty (0 bytes)"), (garbage, "cannot read audio (")):
        assert main([str(path), str(tmp_path / "out.ecdc")]) == 1
        line = _last_line(capsys)
        assert line.startswith(f"{path}: {message}") and line.count(path.name) == 1, line


# ---- f. huge finite samples -------------------------------------------------------------------------------------
def test_huge_samples_are_refused_naming_the_peak(tmp_path, capsys, shipped_model_only):
    """A float WAV peaking at 1e30 coded without a word before; now refused, on both reading paths, with no output."""
    wav = np.zeros(8000, np.float32)
    wav[4000] = -1e30
    huge = tmp_path / "huge.wav"
    sf.write(huge, wav, 16000, subtype="FLOAT")
    for stream in ("never", "always"):
        assert main(["--stream", stream, str(huge), str(tmp_path / "out.ecdc")]) == 1
        assert "has samples up to 1e+30 in magnitude, beyond the ±10 accepted" in _last_line(capsys)
    assert not (tmp_path / "out.ecdc").exists()
