"""Loading and saving EnCodec weights: the official ``.th`` files, Hugging Face folders, and our own format.

Our modules carry the official parameter names, so an official state dict loads as it is. Hugging Face checkpoints
come in two naming dialects (legacy ``weight_g``/``weight_v`` and parametrized ``original0``/``original1``); both are
renamed to the official names before a strict load that leaves no key over. Nothing is downloaded unless the caller
asks for it (``download_official``, ``load_model(..., download=True)``, ``--download-weights``): missing weights raise
an error that says where they were looked for and how to get them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

import torch
from tqdm import tqdm

from codec.files import replacing

from .config import EncodecConfig
from .model import EncodecModel

PathLike = Union[str, Path]

OFFICIAL_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"
#: Overrides OFFICIAL_URL for downloads (a mirror, or a local server in tests).
DOWNLOAD_URL_ENV = "ENCODEC_DOWNLOAD_URL"
#: First folder searched for official files, and where downloads go when it is set.
OFFICIAL_WEIGHTS_ENV = "ENCODEC_WEIGHTS"
OFFICIAL_FILES = {
    "encodec_24khz": "encodec_24khz-d7cc33bc.th",
    "encodec_48khz": "encodec_48khz-7e698e3e.th",
}
OFFICIAL_LM_FILES = {
    "encodec_24khz": "encodec_lm_24khz-1608e3c0.th",
    "encodec_48khz": "encodec_lm_48khz-7add9fc3.th",
}
HF_REPOS = {
    "facebook/encodec_24khz": "encodec_24khz",
    "facebook/encodec_32khz": "encodec_32khz",
    "facebook/encodec_48khz": "encodec_48khz",
}
#: The project's own trained models, shipped in ``codec/encodec/weights/`` (or $ENCODEC_EVAL_PROJECT_WEIGHTS).
PROJECT_FILES = {"encodec_eval_24khz": "encodec_eval_24khz.pt"}
PROJECT_LM_FILES = {"encodec_eval_24khz": "encodec_eval_24khz_lm.pt"}
PROJECT_WEIGHTS_ENV = "ENCODEC_EVAL_PROJECT_WEIGHTS"
PROJECT_FORMAT = "encodec-eval/v1"
_TRAINING_ONLY = ("._codebook.embed_avg", "._codebook.cluster_size")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it claims to describe."""


class WeightsNotFoundError(FileNotFoundError):
    """Weights that are not on this machine; the message says where we looked and how to get them."""


class DownloadError(OSError):
    """A download of official weights that failed; the one-line message says why and what to do. No file is left."""


# ---- where weights live -------------------------------------------------------------------------------------
def official_search_dirs() -> list[Path]:
    """Folders searched for official files: $ENCODEC_WEIGHTS, then torch.hub's cache (where the official package
    downloads them)."""
    dirs = []
    if os.environ.get(OFFICIAL_WEIGHTS_ENV):
        dirs.append(Path(os.environ[OFFICIAL_WEIGHTS_ENV]))
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_official_checkpoint(filename: str) -> Optional[Path]:
    """The path of an official file (e.g. ``encodec_24khz-d7cc33bc.th``) if it is on this machine."""
    for folder in official_search_dirs():
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    return None


def hf_cache_dirs() -> list[Path]:
    """Hugging Face hub caches: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def project_weights_dir() -> Path:
    """Where the project's own weights live: $ENCODEC_EVAL_PROJECT_WEIGHTS, else the package's ``weights/`` folder."""
    override = os.environ.get(PROJECT_WEIGHTS_ENV)
    return Path(override) if override else Path(__file__).resolve().parent / "weights"


def find_project_checkpoint(name: str, lm: bool = False) -> Optional[Path]:
    """The shipped codec (or its LM, ``lm=True``) for model ``name``, None if that file is absent."""
    filename = (PROJECT_LM_FILES if lm else PROJECT_FILES).get(name)
    path = project_weights_dir() / filename if filename else None
    return path if path is not None and path.is_file() else None


def find_hf_checkpoint(repo_id: str) -> Optional[Path]:
    """The newest cached snapshot folder of a hub repository that holds a config and weights."""
    for cache in hf_cache_dirs():
        snapshots = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots"
        if not snapshots.is_dir():
            continue
        for snap in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
            if (snap / "config.json").is_file() and _hf_weight_file(snap) is not None:
                return snap
    return None


def sha256_of(path: PathLike) -> str:
    """sha256 of a file, to name the exact weights (or data) behind every result."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# ---- fetching the official files ----------------------------------------------------------------------------
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[^.]+$")
_CHUNK_BYTES = 1 << 20


def official_filename(name_or_filename: str, lm: bool = False) -> str:
    """The published file for a model name (``encodec_24khz``; its LM with ``lm=True``) or a published file name."""
    files = OFFICIAL_LM_FILES if lm else OFFICIAL_FILES
    if name_or_filename in files:
        return files[name_or_filename]
    if name_or_filename in (*OFFICIAL_FILES.values(), *OFFICIAL_LM_FILES.values()):
        return name_or_filename
    known = ", ".join([*OFFICIAL_FILES, *OFFICIAL_FILES.values(), *OFFICIAL_LM_FILES.values()])
    raise WeightsNotFoundError(f"{name_or_filename!r} is not an official EnCodec file; known: {known}")


def download_dir() -> Path:
    """Where downloads go: $ENCODEC_WEIGHTS when set (the first folder searched), else torch.hub's cache, where the
    official package downloads the same files, so that both find them."""
    return official_search_dirs()[0]


def download_official(name_or_filename: str, lm: bool = False, base_url: Optional[str] = None,
                      progress: bool = True, timeout: float = 60.0) -> Path:
    """The path of an official file, downloaded into ``download_dir()`` unless a searched folder already holds it.

    The file comes from ``base_url`` (default: $ENCODEC_DOWNLOAD_URL, else OFFICIAL_URL, Meta's server), with a
    progress bar on stderr. Like ``torch.hub`` for the official package, the sha256 of the bytes must begin with the
    hex digits after the last ``-`` of the file name. The bytes go to a hidden file beside the target, renamed over
    it only when complete and verified, so an interrupted or bad download never leaves a file that looks loadable.
    ``timeout`` (seconds) bounds each network wait, not the whole transfer. Failures raise DownloadError.
    """
    filename = official_filename(name_or_filename, lm)
    found = find_official_checkpoint(filename)
    if found is not None:
        return found
    match = _HASH_IN_NAME.search(filename)
    if match is None:
        raise DownloadError(f"{filename}: the file name carries no hash prefix, so a download could not be verified")
    target = download_dir() / filename
    url = (base_url or os.environ.get(DOWNLOAD_URL_ENV) or OFFICIAL_URL).rstrip("/") + "/" + filename
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:  # refused, no route, DNS failure, timeout
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not reach {url} ({reason}); are you offline? On a machine with internet access, "
                            f"download that file and copy it into {target.parent}") from exc
    with response:
        try:
            with replacing(target) as part, open(part, "wb") as out:
                _receive(response, out, url, filename, match.group(1), progress)
        except DownloadError:
            raise
        except OSError as exc:  # the folder cannot be created or written, the disk is full
            raise DownloadError(f"cannot write {target}: {exc}") from exc
    return target


def download_all_official(base_url: Optional[str] = None, progress: bool = True) -> list[Path]:
    """Every official codec file and its LM, fetched where missing: what ``--download-weights`` does."""
    wanted = [(name, False) for name in OFFICIAL_FILES] + [(name, True) for name in OFFICIAL_LM_FILES]
    return [download_official(name, lm, base_url, progress) for name, lm in wanted]


def _receive(response: http.client.HTTPResponse, out: BinaryIO, url: str, filename: str, hash_prefix: str,
             progress: bool) -> None:
    """Copy the body into ``out``; raise DownloadError unless it is complete and its hash matches the file name."""
    header = response.headers.get("Content-Length", "")
    expected_bytes = int(header) if header.isdigit() else None
    digest, received = hashlib.sha256(), 0
    with tqdm(total=expected_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=filename,
              disable=None if progress else True) as bar:  # None: only on a terminal
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"{url}: the download broke off after {received} bytes ({exc}); nothing was kept, "
                                    "try again") from exc
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if expected_bytes is not None and received != expected_bytes:
        raise DownloadError(f"{url}: truncated download: {received} of {expected_bytes} bytes arrived; nothing was "
                            "kept, try again")
    actual = digest.hexdigest()
    if not actual.startswith(hash_prefix):
        raise DownloadError(f"{url}: hash mismatch: the sha256 of the {received} bytes begins {actual[:8]}, the file "
                            f"name promises {hash_prefix}; the download was removed")


# ---- state-dict dialects ------------------------------------------------------------------------------------
_HF_TO_OFFICIAL = [
    (re.compile(r"^(encoder|decoder)\.layers\."), r"\1.model."),
    (re.compile(r"^quantizer\.layers\."), "quantizer.vq.layers."),
    (re.compile(r"\.codebook\."), "._codebook."),
    (re.compile(r"\.parametrizations\.weight\.original0$"), ".weight_g"),
    (re.compile(r"\.parametrizations\.weight\.original1$"), ".weight_v"),
]


def hf_to_official(state: dict[str, torch.Tensor], model: EncodecModel) -> dict[str, torch.Tensor]:
    """Rename Hugging Face keys (legacy or parametrized) to the official ones ``model`` expects."""
    reference = model.state_dict()
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _HF_TO_OFFICIAL:
            new = pattern.sub(repl, new)
        if not new.startswith("quantizer.") and "lstm." not in new:
            new = _hf_conv_name(new, reference)
        out[new] = value
    return out


def _hf_conv_name(key: str, reference: dict[str, Any]) -> str:
    # HF: <layer>.conv.<param> and <layer>.norm.<param>; official: <layer>.conv.conv.<param>,
    # <layer>.conv.norm.<param>, or <layer>.convtr.convtr.<param> for transposed convs.
    match = re.match(r"^(.*)\.(conv|norm)\.([^.]+)$", key)
    if not match:
        return key
    prefix, kind, param = match.groups()
    for candidate in (f"{prefix}.conv.{kind}.{param}", f"{prefix}.convtr.{'convtr' if kind == 'conv' else 'norm'}"
                      f".{param}"):
        if candidate in reference:
            return candidate
    return key


def official_to_hf(state: dict[str, torch.Tensor], parametrized: bool = False) -> dict[str, torch.Tensor]:
    """Rename official keys to Hugging Face's (legacy ``weight_g``/``weight_v`` unless ``parametrized``)."""
    out = {}
    for key, value in state.items():
        new = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", key)
        new = new.replace(".conv.conv.", ".conv.").replace(".conv.norm.", ".norm.")
        new = new.replace(".convtr.convtr.", ".conv.").replace(".convtr.norm.", ".norm.")
        new = new.replace("quantizer.vq.layers.", "quantizer.layers.").replace("._codebook.", ".codebook.")
        if parametrized:
            new = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", new)
            new = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", new)
        out[new] = value
    return out


def load_state_dict_strict(model: EncodecModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Load with no key missing or left over; shape errors name the key."""
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{source}: state dict does not match {model.config.name}: "
                              f"{len(missing)} missing (e.g. {missing[:3]}), "
                              f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc


# ---- Hugging Face config --------------------------------------------------------------------------------------
def config_from_hf(data: dict[str, Any]) -> EncodecConfig:
    """An EncodecConfig from a Hugging Face ``config.json``."""
    hidden = data.get("hidden_size", 128)
    if data.get("codebook_dim") not in (None, hidden):
        raise CheckpointError(f"codebook_dim {data['codebook_dim']} != hidden_size {hidden}: "
                              "codebook projections are not supported")
    chunk = data.get("chunk_length_s")
    sample_rate = int(data.get("sampling_rate", 24000))
    return EncodecConfig(
        name=f"encodec_{sample_rate // 1000}khz",
        sample_rate=sample_rate,
        channels=int(data.get("audio_channels", 1)),
        causal=bool(data.get("use_causal_conv", True)),
        norm=data.get("norm_type", "weight_norm"),
        normalize=bool(data.get("normalize", False)),
        segment=None if chunk is None else float(chunk),
        overlap=0.01 if data.get("overlap") is None else float(data["overlap"]),
        target_bandwidths=tuple(data.get("target_bandwidths", (1.5, 3.0, 6.0, 12.0, 24.0))),
        dimension=hidden,
        n_filters=data.get("num_filters", 32),
        n_residual_layers=data.get("num_residual_layers", 1),
        ratios=tuple(data.get("upsampling_ratios", (8, 5, 4, 2))),
        kernel_size=data.get("kernel_size", 7),
        last_kernel_size=data.get("last_kernel_size", 7),
        residual_kernel_size=data.get("residual_kernel_size", 3),
        dilation_base=data.get("dilation_growth_rate", 2),
        pad_mode=data.get("pad_mode", "reflect"),
        true_skip=not data.get("use_conv_shortcut", True),
        compress=data.get("compress", 2),
        lstm=data.get("num_lstm_layers", 2),
        trim_right_ratio=data.get("trim_right_ratio", 1.0),
        bins=data.get("codebook_size", 1024),
    )


def config_to_hf(config: EncodecConfig) -> dict[str, Any]:
    """A Hugging Face ``config.json`` dictionary for ``config``."""
    return {
        "model_type": "encodec",
        "architectures": ["EncodecModel"],
        "target_bandwidths": list(config.target_bandwidths),
        "sampling_rate": config.sample_rate,
        "audio_channels": config.channels,
        "normalize": config.normalize,
        "chunk_length_s": config.segment,
        "overlap": config.overlap if config.segment is not None else None,
        "hidden_size": config.dimension,
        "num_filters": config.n_filters,
        "num_residual_layers": config.n_residual_layers,
        "upsampling_ratios": list(config.ratios),
        "norm_type": config.norm,
        "kernel_size": config.kernel_size,
        "last_kernel_size": config.last_kernel_size,
        "residual_kernel_size": config.residual_kernel_size,
        "dilation_growth_rate": config.dilation_base,
        "use_causal_conv": config.causal,
        "pad_mode": config.pad_mode,
        "compress": config.compress,
        "num_lstm_layers": config.lstm,
        "trim_right_ratio": config.trim_right_ratio,
        "codebook_size": config.bins,
        "codebook_dim": config.dimension,
        "use_conv_shortcut": not config.true_skip,
    }


def _hf_weight_file(folder: Path) -> Optional[Path]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign files fail in many library-specific ways
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


# ---- public entry points ------------------------------------------------------------------------------------
def load_hf_folder(folder: PathLike, fold: bool = True) -> EncodecModel:
    """A model from a Hugging Face folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    weights = _hf_weight_file(folder)
    if not config_path.is_file() or weights is None:
        raise CheckpointError(f"{folder}: a Hugging Face checkpoint needs config.json and model.safetensors "
                              "or pytorch_model.bin")
    try:
        config = config_from_hf(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{config_path}: not a valid config ({exc})") from exc
    model = EncodecModel(config)
    load_state_dict_strict(model, hf_to_official(_read_weights(weights), model), str(weights))
    return _ready(model, fold)


def load_official_file(path: PathLike, config: Optional[EncodecConfig] = None, fold: bool = True,
                       state: Optional[dict[str, torch.Tensor]] = None) -> EncodecModel:
    """A model from an official ``.th`` state dict; the config is inferred from the file name when not given."""
    path = Path(path)
    if config is None:
        config = _config_from_name(path.name)
    state = _read_weights(path) if state is None else state
    if "best_state" in state and isinstance(state["best_state"], dict):  # audiocraft wraps its checkpoints
        state = state["best_state"]
    model = EncodecModel(config)
    load_state_dict_strict(model, state, str(path))
    return _ready(model, fold)


def load_project_file(path: PathLike, fold: bool = True, payload: Optional[dict[str, Any]] = None) -> EncodecModel:
    """A model saved by ``save_project`` (config and weights in one file)."""
    path = Path(path)
    payload = _read_weights(path) if payload is None else payload
    if payload.get("format") != PROJECT_FORMAT:
        raise CheckpointError(f"{path}: not an encodec-eval checkpoint (format {payload.get('format')!r})")
    model = EncodecModel(EncodecConfig.from_dict(payload["config"]))
    state = {k: v.float() for k, v in payload["state_dict"].items()}
    if payload.get("inference_only"):
        for key, value in model.state_dict().items():
            if key.endswith(_TRAINING_ONLY):  # EMA statistics restart from the codebook itself
                embed = state.get(key.rsplit(".", 1)[0] + ".embed")
                restart_sums = key.endswith("embed_avg") and embed is not None
                state[key] = embed.clone() if restart_sums else torch.ones_like(value)
    load_state_dict_strict(model, state, str(path))
    return _ready(model, fold)


def load_model(name_or_path: PathLike, fold: bool = True, download: bool = False) -> EncodecModel:
    """Load EnCodec weights from a name (``encodec_24khz``, ``encodec_eval_24khz``, ``facebook/encodec_48khz``) or
    a path.

    Paths may be an official ``.th`` file, a Hugging Face folder, or a file saved by ``save_project``. Official and
    Hugging Face names are looked up in the local caches (``download=True`` lets the official files be fetched by
    ``download_official``, hash checked); the project's own model comes from the weights shipped with the package.
    """
    text = str(name_or_path)
    if text in OFFICIAL_FILES:
        filename = OFFICIAL_FILES[text]
        found = download_official(text) if download else find_official_checkpoint(filename)
        if found is not None:
            return load_official_file(found, EncodecConfig.preset(text), fold)
        raise WeightsNotFoundError(
            f"official weights {filename} not found; looked in {', '.join(map(str, official_search_dirs()))}. "
            f"Get them with `encodec --download-weights` (or load_model(..., download=True)), or copy "
            f"{OFFICIAL_URL}{filename}, downloaded on a machine with internet access, into one of those folders.")
    if text in PROJECT_FILES:
        found = find_project_checkpoint(text)
        if found is not None:
            return load_project_file(found, fold)
        raise WeightsNotFoundError(f"the project's weights {project_weights_dir() / PROJECT_FILES[text]} are missing "
                                   f"(they ship with encodec-eval; set {PROJECT_WEIGHTS_ENV} to the folder holding "
                                   f"{PROJECT_FILES[text]} if you moved them)")
    if text in HF_REPOS:
        found = find_hf_checkpoint(text)
        if found is not None:
            return load_hf_folder(found, fold)
        raise WeightsNotFoundError(
            f"Hugging Face checkpoint {text} not found in {', '.join(map(str, hf_cache_dirs()))}. Get it with "
            f"`huggingface-cli download {text}` on a machine with internet access, or pass its folder as a path.")
    path = Path(text)
    if path.is_dir():
        return load_hf_folder(path, fold)
    if path.is_file():
        payload = _read_weights(path)
        if "format" in payload:
            return load_project_file(path, fold, payload)
        return load_official_file(path, fold=fold, state=payload)
    known = ", ".join(list(OFFICIAL_FILES) + list(PROJECT_FILES) + list(HF_REPOS))
    raise WeightsNotFoundError(f"{text!r} is neither a known model ({known}) nor an existing file or folder")


def _config_from_name(filename: str) -> EncodecConfig:
    for name in OFFICIAL_FILES:
        if filename.startswith(name):
            return EncodecConfig.preset(name)
    raise CheckpointError(f"{filename}: cannot tell the model from the file name; pass its EncodecConfig")


def _ready(model: EncodecModel, fold: bool) -> EncodecModel:
    model.eval()
    if fold:
        model.fold_weight_norm()
    return model


def _unfolded_state(model: EncodecModel) -> dict[str, torch.Tensor]:
    from .modules.conv import has_weight_norm

    if model.config.norm == "weight_norm" and not has_weight_norm(model):
        raise CheckpointError("this model's weight norm was folded for inference; load it with fold=False to save "
                              "it in a format that stores weight_g and weight_v")
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_official(model: EncodecModel, path: PathLike) -> Path:
    """Save as an official-style ``.th`` state dict (loadable by the official package for its two configs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_unfolded_state(model), path)
    return path


def save_hf(model: EncodecModel, folder: PathLike, safe_serialization: bool = True) -> Path:
    """Save as a Hugging Face folder: ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in official_to_hf(_unfolded_state(model)).items()}
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2))
    if safe_serialization:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


def save_project(model: EncodecModel, path: PathLike, dtype: torch.dtype = torch.float32,
                 metadata: Optional[dict[str, Any]] = None, inference_only: bool = False) -> Path:
    """Save config and weights in one file.

    ``dtype=torch.float16`` halves the file; ``inference_only`` also drops the codebooks' EMA statistics
    (``embed_avg``, ``cluster_size``), which only training needs: together they keep shipped weights small.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in _unfolded_state(model).items()
             if not (inference_only and k.endswith(_TRAINING_ONLY))}
    payload = {"format": PROJECT_FORMAT, "config": model.config.to_dict(), "state_dict": state,
               "inference_only": inference_only, "metadata": dict(metadata or {})}
    torch.save(payload, path)
    return path
