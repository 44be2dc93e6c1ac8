"""The age/gender ONNX sessions run on one thread each and do not spin (issue 14 item 7)."""

from __future__ import annotations

from models.attributes import AgeGenderModel, session_options

SPINNING = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _assert_quiet(options: object, intra: int = 1) -> None:
    assert options.intra_op_num_threads == intra  # type: ignore[attr-defined]
    assert options.inter_op_num_threads == 1  # type: ignore[attr-defined]
    for key in SPINNING:
        assert options.get_session_config_entry(key) == "0"  # type: ignore[attr-defined]


def test_session_options_are_one_thread_without_spinning() -> None:
    _assert_quiet(session_options())
    _assert_quiet(session_options(None))
    _assert_quiet(session_options(3), intra=3)  # an explicit thread count is kept, still without spinning


def test_the_real_model_sessions_use_them() -> None:
    model = AgeGenderModel(device="cpu")
    for session in (model._age_session, model._gender_session):
        _assert_quiet(session.get_session_options())
