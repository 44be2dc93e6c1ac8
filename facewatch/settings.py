"""Process configuration from FACEWATCH_* environment variables (see README, "Configuration")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    home: Path
    database_url: str
    media_root: Path
    http_host: str
    http_port: int
    ray_address: str
    admin_token: str | None
    public_url: str
    gallery_shards: int
    gallery_replicas: int
    max_upload_bytes: int
    extractor_min_replicas: int
    extractor_max_replicas: int
    extractor_target_ongoing_requests: float
    extractor_max_batch: int
    camera_slots: int
    face_detector: str = "auto"  # auto: yuface on CPU, MTCNN on GPU (models.detector.make_detector)
    camera_gpu_fraction: float = 0.0  # GPU share each camera job asks Ray for; 0: CPU only

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "galleries"


def load_config(env: dict[str, str] | None = None) -> Config:
    """Read the configuration; `env` defaults to os.environ (tests pass their own)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("FACEWATCH_HOME") or "./var").resolve()
    database_url = env.get("FACEWATCH_DATABASE_URL") or f"sqlite:///{home / 'facewatch.db'}"
    media_root = Path(env.get("FACEWATCH_MEDIA_ROOT") or home / "media").resolve()
    port = int(env.get("FACEWATCH_HTTP_PORT") or 8000)
    host = env.get("FACEWATCH_HTTP_HOST") or "127.0.0.1"
    return Config(
        home=home,
        database_url=database_url,
        media_root=media_root,
        http_host=host,
        http_port=port,
        ray_address=env.get("FACEWATCH_RAY_ADDRESS", ""),
        admin_token=env.get("FACEWATCH_ADMIN_TOKEN") or None,
        public_url=(env.get("FACEWATCH_PUBLIC_URL") or f"http://{host}:{port}").rstrip("/"),
        gallery_shards=int(env.get("FACEWATCH_GALLERY_SHARDS") or 2),
        gallery_replicas=int(env.get("FACEWATCH_GALLERY_REPLICAS") or 1),
        max_upload_bytes=int(env.get("FACEWATCH_MAX_UPLOAD_BYTES") or 10 * 1024 * 1024),
        extractor_min_replicas=int(env.get("FACEWATCH_EXTRACTOR_MIN_REPLICAS") or 1),
        extractor_max_replicas=int(env.get("FACEWATCH_EXTRACTOR_MAX_REPLICAS") or 1),
        extractor_target_ongoing_requests=float(env.get("FACEWATCH_EXTRACTOR_TARGET_ONGOING_REQUESTS") or 8),
        extractor_max_batch=int(env.get("FACEWATCH_EXTRACTOR_MAX_BATCH") or 64),
        camera_slots=int(env.get("FACEWATCH_CAMERA_SLOTS") or 4),
        face_detector=env.get("FACEWATCH_FACE_DETECTOR") or "auto",
        camera_gpu_fraction=float(env.get("FACEWATCH_CAMERA_GPU_FRACTION") or 0.0),
    )
