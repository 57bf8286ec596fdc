"""``stopped(stop)``: the CPU kernels' reading of the interrupt flag (see :mod:`gpuseg._core.interrupts`).

A plain ``stop[0]`` in a loop that never writes it may be read once, before the loop, by the optimiser: the
kernel would then never see the flag that another thread sets. An atomic load with acquire ordering is read
where it stands, every time, at the cost of a plain load on x86 and ARM.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic


@intrinsic
def stopped(typingctx, stop):
    """True once ``stop[0]`` (a one-element bool array) is set, read afresh at each call."""
    if not (isinstance(stop, types.Array) and stop.dtype == types.boolean):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        flag = builder.load_atomic(array.data, "acquire", 1)
        return builder.icmp_unsigned("!=", flag, flag.type(0))

    return types.boolean(stop), codegen
