"""Parameter coercion without pydantic for the values gcos's commands take on every run.

typer (0.2x and later) coerces every non-flag parameter through a pydantic TypeAdapter, which imports pydantic
and builds an adapter per parameter: about 0.1 s of every `gcos rehearse` process (issue 13 item 2) to turn a
str into the same str. `install()` wraps typer's factory of runtime parameters so that a value that already is
what typer would return (a str for a str, a Path for a Path, an int or a bool for itself) passes through the same checks
typer applies (the Path's exists/file_okay/dir_okay/... via typer's own coerce_cli_path) without pydantic; any
other value (bytes, an int given as text, an unknown annotation, a custom parser) goes to typer's own
coercion, built only then. Every message and exit code stays typer's. A typer without these internals is
left alone (install() does nothing), so an upgrade can cost time, never behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INSTALLED = False


def install() -> bool:
    """Wrap typer.core's build_runtime_param once; whether the fast path is in place."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from typer import _coercion, _param_types, core
    except ImportError:
        return False
    needed = (
        hasattr(core, "build_runtime_param"),
        hasattr(_coercion, "RuntimeParam"),
        hasattr(_param_types, "coerce_cli_path"),
        hasattr(_param_types, "routes_to_path"),
    )
    if not all(needed):
        return False
    original = core.build_runtime_param  # type: ignore[attr-defined]
    base: Any = _coercion.RuntimeParam

    @dataclass(frozen=True)
    class PlainRuntimeParam(base):  # type: ignore[misc]
        """A str, Path, int or bool parameter: values of that type pass typer's checks here, others go to typer."""

        descriptor: Any = None
        fallback: list[Any] = field(default_factory=list, compare=False)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation = self.annotation
            if annotation is str and isinstance(value, str):
                return value
            if annotation is int and type(value) is int:
                return value
            if annotation is bool and isinstance(value, bool):
                return value
            is_path = isinstance(annotation, type) and issubclass(annotation, Path)
            if is_path and isinstance(value, str | Path) and value != "":  # "" as typer (pydantic) says
                path = value if isinstance(value, annotation) else annotation(value)
                return _param_types.coerce_cli_path(
                    path, self.parameter_info, path_type=annotation, param=param, ctx=ctx
                )
            if not self.fallback:
                self.fallback.append(original(self.descriptor))
            return self.fallback[0]._coerce_value(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor: Any) -> Any:
        if _plain(descriptor, _param_types):
            return PlainRuntimeParam(
                annotation=descriptor.annotation, parameter_info=descriptor.parameter_info, descriptor=descriptor
            )
        return original(descriptor)

    core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]
    _INSTALLED = True
    return True


def _plain(descriptor: Any, param_types: Any) -> bool:
    """A parameter typer would coerce by a plain type: no file, no custom parser, no choices, no range."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or getattr(info, "parser", None) is not None:
        return False
    if getattr(info, "click_type", None) is not None:
        return False
    annotation = descriptor.annotation
    if annotation is bool:
        return True
    if annotation is str or annotation is int:
        return getattr(info, "min", None) is None and getattr(info, "max", None) is None
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return getattr(info, "path_type", None) is None and bool(param_types.routes_to_path(annotation, info))
    return False
