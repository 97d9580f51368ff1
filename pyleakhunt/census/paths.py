"""Naming objects by the path a person would type to reach them.

The scanner describes a path as *steps*, root first; each step is how one
object refers to the next::

    (edge, label, address, type_name, class_name, generalised)

``edge`` is one of ``module`` (a root: ``sys.modules[label]``), ``local``
(a root: ``label`` is ``(function, variable, filename, firstlineno)``),
``static_type`` (a root: the ``__dict__`` of the static type ``label``),
``module_dict``, ``class_dict``, ``instance_dict`` (a namespace: the next
key is an attribute), ``key`` (a dict value, ``label`` its key), ``dict_key``,
``item`` (``label`` the index), ``member`` (of a set), ``attr`` and ``slot``
(instance attributes), ``closure`` (``label`` the variable), ``field`` (a
named field such as ``__defaults__``) and ``offset`` (a word of an object of
unknown layout, ``label`` its offset).  ``class_name`` is set when the
object reached is itself a class; ``generalised`` when the label stands for
every sibling (``[*]``).

This module turns steps into text: :func:`render_path` gives
``app.Profiler.results[*]``, and :func:`describe_role` says what the last
object is to its holder ("a class attribute").
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

Step = Tuple[str, Any, int, str, Any, bool]

NAMESPACE_EDGES = frozenset({"module_dict", "class_dict", "instance_dict"})


def _key_text(label: Any, general: bool, namespace: bool) -> str:
    if general:
        return "[*]"
    if namespace and isinstance(label, str) and label.isidentifier():
        return "." + label
    if label is None:
        return "[?]"
    return "[%r]" % (label,)


def _local_text(label: Any) -> str:
    if isinstance(label, tuple) and len(label) == 4:
        function, variable, _, _ = label
        return f"{function}.<locals>.{variable}"
    return "<local>"


def _is_cell_contents(steps: Sequence[Step], i: int) -> bool:
    """Is step *i* the contents of a cell that a closure or a frame holds?
    The cell is an implementation detail: ``f.<closure x>`` is the value."""
    edge, label = steps[i][0], steps[i][1]
    return (
        edge == "field"
        and label == "cell_contents"
        and i > 0
        and steps[i - 1][0] in ("closure", "local")
    )


def _step_text(step: Step, namespace: bool, last: bool) -> Tuple[str, bool]:
    """(text to append, whether the next key names an attribute)."""
    edge, label, _, _, _, general = step
    if edge in NAMESPACE_EDGES:
        return (".__dict__" if last else ""), True
    if edge == "key":
        return _key_text(label, general, namespace), False
    if edge == "item":
        return ("[*]" if general or label is None else f"[{label}]"), False
    if edge == "dict_key":
        return "[<key>]", False
    if edge == "member":
        return "{*}", False
    if edge in ("attr", "slot", "field"):
        return f".{label}", False
    if edge == "closure":
        return f".<closure {label}>", False
    if edge == "offset":
        return (f".<+{label:#x}>" if isinstance(label, int) else ".<?>"), False
    return f".<{edge}>", False


def render_path(steps: Sequence[Step]) -> str:
    """The path of the last object of *steps*: ``app.Profiler.results[*]``.

    A class met on the way restarts the path at its qualified name
    (``module.Class``), the name people know it by.
    """
    text = ""
    namespace = False
    for i, step in enumerate(steps):
        edge, label, _, _, class_name, _ = step
        last = i == len(steps) - 1
        if edge == "module":
            text, namespace = str(label), False
        elif edge == "local":
            text, namespace = _local_text(label), False
        elif edge == "static_type":
            text, namespace = str(label), True
        elif _is_cell_contents(steps, i):
            namespace = False
        else:
            part, namespace = _step_text(step, namespace, last)
            text += part
        if class_name:
            text, namespace = str(class_name), False
    return text


def describe_role(steps: Sequence[Step]) -> str:
    """What the last object of *steps* is to whoever holds it: "a module
    global", "a class attribute", "an item of a list"..."""
    if not steps:
        return "unknown"
    if _is_cell_contents(steps, len(steps) - 1):
        return describe_role(steps[:-1])
    edge, label, _, _, _, _ = steps[-1]
    holder_edge = steps[-2][0] if len(steps) > 1 else ""
    holder_type = steps[-2][3] if len(steps) > 1 else ""
    if edge == "module":
        return "a module"
    if edge == "local":
        if isinstance(label, tuple) and len(label) == 4:
            function, _, filename, line = label
            return f"a local variable of {function}() ({filename}:{line})"
        return "a local variable"
    if edge == "static_type":
        return "the namespace of a built-in type"
    if edge == "key":
        return {
            "module_dict": "a module global",
            "class_dict": "a class attribute",
            "static_type": "a class attribute",
            "instance_dict": "an instance attribute",
        }.get(holder_edge, "a value in a dict")
    if edge in ("attr", "slot"):
        return "an instance attribute"
    if edge == "closure":
        return "a closure variable"
    if edge == "item":
        return f"an item of a {holder_type}"
    if edge == "member":
        return f"a member of a {holder_type}"
    if edge == "dict_key":
        if holder_edge in NAMESPACE_EDGES or holder_edge == "static_type":
            return "a name in a namespace"
        return "a key of a dict"
    if edge in NAMESPACE_EDGES:
        return "a namespace (__dict__)"
    if edge == "field":
        return f"the {label} of a {holder_type}"
    return f"referred to by a {holder_type}"


def holder_steps(steps: Sequence[Step]) -> List[Step]:
    """The steps to the object that directly holds the last one, skipping
    namespaces: the holder of ``app.Foo.x`` is the class ``app.Foo``, not
    its ``__dict__``."""
    holder = list(steps[:-1])
    while holder and holder[-1][0] in NAMESPACE_EDGES:
        holder.pop()
    return holder
