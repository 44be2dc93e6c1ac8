"""A camera's or video's stream settings (SPEC §2, §3), defined once.

The API validates them strictly (`serve_apps/api/schemas.py` `StreamSettings` adds the request-body
rules to this class); the jobs (`actors/camera_job.py`) and the batch driver read stored settings
with `StreamSettings.from_dict`, which ignores unknown keys and nulls.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from facewatch.fields import Timestamp, check_box


def _as_tuple(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, list):
        if len(value) != 4:  # before the tuple's own checks: a short box is one error on the field itself
            check_box(value, info.field_name or "box")
        return tuple(value)
    return value


# A box is a JSON array [x1, y1, x2, y2]; held as a tuple (a fixed shape, and the jobs index it).
Box = Annotated[tuple[float, float, float, float], BeforeValidator(_as_tuple)]


# The detection size when a camera or video does not set one (docs/detection.md, "Detection size"): a live
# camera must keep up at `detect_fps` on few cores, and 480 finds every labelled face of the fixture at
# five-eighths of the cost of 640; a video is read without a clock, so it gets 640, which gives the smallest faces
# steadier landmarks (the clip's pianist matches at 640 and not at 480).
LIVE_DETECT_MAX_SIDE = 480
VIDEO_DETECT_MAX_SIDE = 640


class StreamSettings(BaseModel):
    """How a camera's stream is decoded, filtered and posted (SPEC §2, §3)."""

    min_quality: float = Field(0.0, ge=0.0, le=1.0)
    min_face_size: int = Field(30, ge=10, le=4000, description="pixels")
    max_face_size: int = Field(2000, ge=10, le=8000, description="pixels")
    roi: Box | None = Field(None, description="[x1, y1, x2, y2]: post only faces whose centre is inside")
    rot: Box | None = Field(None, description="[x1, y1, x2, y2]: detect and track only inside this region")
    overall_only: bool = True
    realtime_interval_s: float = Field(1.0, gt=0.0, le=3600.0)
    realtime_every_interval: bool = False
    jpeg_quality: int = Field(95, ge=1, le=100)
    play_speed: float = Field(-1.0, ge=-1.0, le=100.0, description="-1: as fast as possible for files")
    use_stream_timestamp: bool = False
    start_timestamp: Timestamp | None = None
    ffmpeg_options: dict[str, str] = Field(default_factory=dict)
    detect_every_n: int = Field(1, ge=1, le=1000)
    detect_fps: float = Field(
        5.0, ge=0.0, le=1000.0,
        description="live cameras: detections per second of stream time at most, on the newest frame; the "
                    "tracker carries faces over the frames between (0: every frame). Files: every frame "
                    "`detect_every_n` picks")
    detect_max_side: int | None = Field(
        None, ge=160, le=4096,
        description=f"pixels: yuface detects on the frame scaled down to this longer side (unset: "
                    f"{LIVE_DETECT_MAX_SIDE} for a live camera, {VIDEO_DETECT_MAX_SIDE} for a video)")
    motion_threshold: float = Field(0.0, ge=0.0, le=1.0)
    miss_interval_s: float = Field(1.0, gt=0.0, le=60.0)
    disable_drops: bool = False

    @field_validator("roi", "rot")
    @classmethod
    def _box(cls, value: tuple[float, ...] | None, info: Any) -> Any:
        return check_box(value, info.field_name)

    @model_validator(mode="after")
    def _sizes(self) -> StreamSettings:
        if self.max_face_size < self.min_face_size:
            raise ValueError("max_face_size must be >= min_face_size")
        return self

    def for_source(self, live: bool) -> StreamSettings:
        """These settings with the detection size a live camera or a video gets when none is set."""
        if self.detect_max_side is not None:
            return self
        return self.model_copy(update={"detect_max_side": LIVE_DETECT_MAX_SIDE if live else VIDEO_DETECT_MAX_SIDE})

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> StreamSettings:
        """Stored settings (a camera's or video's JSON): unknown keys and nulls are ignored, values
        are coerced (a stored number as text still reads); out-of-range values raise ValueError."""
        values = {k: v for k, v in (raw or {}).items() if k in cls.model_fields and v is not None}
        if isinstance(values.get("ffmpeg_options"), dict):
            values["ffmpeg_options"] = {str(k): str(v) for k, v in values["ffmpeg_options"].items()}
        return cls.model_validate(values, strict=False)
