"""A reduction's parameter-gradient row as a bare pointer, for loops that vectorise.

``param_grad(v, tap, y, acc, div, prm, g, out)`` adds into ``out[k]``, one plane's row of
float64 accumulators.  A kernel that loops over channels (channels last) hands each channel
its own row; as a NumPy view (``gp[r, ch]``) that is an array made and reference-counted per
element, calls the compiler cannot see through, and the loop stays scalar (a gem term took
8.9 ns an element, 2.9 ns with the same sum written into a flat array).  :func:`slot_row`
gives the row as a pointer to its first accumulator and the distance between its
accumulators instead, which reductions index as they index an array (``out[k]``,
``out[k] += ...``), with nothing to count: the loop vectorises.  The kernels lay the rows
out parameter-major (``gp[k, task, channel]``), so that the channels' ``out[k]`` are
consecutive: with rows of consecutive accumulators and a distance known only when the
kernel runs, the loop stayed scalar (8.5 ns an element).  A row knows its width: negative
indices count from its end, and ``len(out)`` and ``out.shape`` work, as on an array; other
uses of an array (slices) do not compile, and :func:`numbapool.kernels.cpu.param_grad` then
falls back to the channels-first kernel.  Indices are not checked against the width, as
Numba does not check an array's.
"""

from __future__ import annotations

import operator

from numba.core import cgutils, types
from numba.extending import intrinsic, models, overload, overload_attribute, register_model

__all__ = ["SlotRow", "slot_row"]


class SlotRow(types.Type):
    """A row of float64 accumulators at an address (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(name="SlotRow")


_SLOT_ROW = SlotRow()


@register_model(SlotRow)
class _SlotRowModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("data", types.CPointer(types.float64)),
                                        ("stride", types.intp), ("width", types.intp)])


@intrinsic
def slot_row(typingctx, arr, start, stride, width):
    """The row of ``width`` elements of a C-contiguous float64 array's flat elements
    ``start``, ``start + stride``, ``start + 2 stride``..."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.float64
            and arr.layout == "C"
            and all(isinstance(t, types.Integer) for t in (start, stride, width))):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        row = cgutils.create_struct_proxy(signature.return_type)(context, builder)
        row.data = builder.gep(ary.data, [args[1]])
        row.stride = context.cast(builder, args[2], signature.args[2], types.intp)
        row.width = context.cast(builder, args[3], signature.args[3], types.intp)
        return row._getvalue()

    return _SLOT_ROW(arr, start, stride, width), codegen


def _at(context, builder, signature, args):
    row = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0])
    k = context.cast(builder, args[1], signature.args[1], types.intp)
    if signature.args[1].signed:  # (from the end, as an array's)
        k = builder.select(builder.icmp_signed("<", k, k.type(0)), builder.add(k, row.width),
                           k)
    return builder.gep(row.data, [builder.mul(k, row.stride)])


@intrinsic
def _width(typingctx, row):
    def codegen(context, builder, signature, args):
        return cgutils.create_struct_proxy(signature.args[0])(context, builder,
                                                              value=args[0]).width

    return types.intp(row), codegen


@overload(len)
def _len(row):
    if isinstance(row, SlotRow):
        return lambda row: _width(row)
    return None


@overload_attribute(SlotRow, "shape")
def _shape(row):
    return lambda row: (_width(row),)


@intrinsic
def _get(typingctx, row, k):
    def codegen(context, builder, signature, args):
        return builder.load(_at(context, builder, signature, args))

    return types.float64(row, k), codegen


@intrinsic
def _set(typingctx, row, k, value):
    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[2], signature.args[2], types.float64)
        builder.store(v, _at(context, builder, signature, args))
        return context.get_dummy_value()

    return types.none(row, k, value), codegen


@overload(operator.getitem)
def _getitem(row, k):
    if isinstance(row, SlotRow) and isinstance(k, types.Integer):
        return lambda row, k: _get(row, k)
    return None


@overload(operator.setitem)
def _setitem(row, k, value):
    if (isinstance(row, SlotRow) and isinstance(k, types.Integer)
            and isinstance(value, (types.Float, types.Integer, types.Boolean))):
        return lambda row, k, value: _set(row, k, value)
    return None
