"""Bad arguments get a clear error: the right Python exception type, and a
message "mcuq::<op>: expected ..." naming the argument and the value
(csrc/mcuq/ops/checks.cpp). One test per case; the shared checks are run
through every op that takes quantization parameters."""

import math
import re

import pytest
import torch

import mcuq  # noqa: F401  (registers torch.ops.mcuq.*)

OPS = ["fake_quantize", "quantize", "dequantize"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def call(op, x, scale, zero_point, quant_min=-8, quant_max=7, axis=0, group_size=1, **kw):
    """Calls torch.ops.mcuq.<op>; dequantize gets the input as integers."""
    if op == "dequantize" and x.is_floating_point():
        x = x.to(torch.int32)
    return getattr(torch.ops.mcuq, op)(x, scale, zero_point, quant_min, quant_max, axis, group_size, **kw)


def raises(op, exc, fragment):
    """pytest.raises for `exc` whose message starts with mcuq::<op> and holds `fragment`."""
    return pytest.raises(exc, match=re.escape(f"mcuq::{op}: expected") + ".*" + re.escape(fragment))


X = torch.zeros(3, 4)
S1, Z1 = torch.tensor([0.1]), torch.tensor([0])
S4, Z4 = torch.full((4,), 0.1), torch.zeros(4, dtype=torch.int32)


@pytest.mark.parametrize("op", OPS)
class TestQParamErrors:
    # scale values -------------------------------------------------------
    @pytest.mark.parametrize("value,shown", [(0.0, "got 0"), (-1.0, "got -1"), (-0.0, "got -0")])
    def test_scale_not_positive(self, op, value, shown):
        with raises(op, ValueError, f"scale to be finite and >= 1.17549e-38 (the smallest normal float32), but {shown}"):
            call(op, X, torch.tensor([value]), Z1)

    @pytest.mark.parametrize("value,shown", [(math.inf, "got inf"), (-math.inf, "got -inf"), (math.nan, "got nan")])
    def test_scale_not_finite(self, op, value, shown):
        with raises(op, ValueError, f"scale to be finite and >= 1.17549e-38 (the smallest normal float32), but {shown}"):
            call(op, X, torch.tensor([value]), Z1)

    def test_scale_subnormal(self, op):
        with raises(op, ValueError, "scale to be finite and >= 1.17549e-38 (the smallest normal float32), but got 1e-40"):
            call(op, X, torch.tensor([1e-40], dtype=torch.float64), Z1)

    def test_scale_underflows_float32(self, op):
        # scales are used as float32, where a float64 1e-50 is 0; the message shows the value given
        with raises(op, ValueError, "scale to be finite and >= 1.17549e-38 (the smallest normal float32), but got 1e-50"):
            call(op, X, torch.tensor([1e-50], dtype=torch.float64), Z1)

    def test_scale_per_channel_names_index(self, op):
        with raises(op, ValueError, "but got 0 at index 2"):
            call(op, X, torch.tensor([0.1, 0.2, 0.0, 0.3]), Z4, axis=1)

    # zero point values --------------------------------------------------
    @pytest.mark.parametrize("value", [8, -9, 2**40])
    def test_integer_zero_point_out_of_range(self, op, value):
        with raises(op, ValueError, f"zero_point in [quant_min, quant_max] = [-8, 7], but got {value}"):
            call(op, X, S1, torch.tensor([value]))

    def test_integer_zero_point_out_of_range_per_channel(self, op):
        with raises(op, ValueError, "zero_point in [quant_min, quant_max] = [0, 255], but got -1 at index 3"):
            call(op, X, S4, torch.tensor([0, 1, 255, -1]), 0, 255, 1)

    @pytest.mark.parametrize("value,shown", [(math.nan, "nan"), (math.inf, "inf")])
    def test_float_zero_point_not_finite(self, op, value, shown):
        with raises(op, ValueError, f"zero_point to be finite, but got {shown}"):
            call(op, X, S1, torch.tensor([value]))

    # range ----------------------------------------------------------------
    @pytest.mark.parametrize("qmin,qmax", [(7, 7), (8, 7), (0, -1)])
    def test_quant_min_not_below_quant_max(self, op, qmin, qmax):
        with raises(op, ValueError, f"quant_min < quant_max, but got quant_min={qmin}, quant_max={qmax}"):
            call(op, X, S1, Z1, qmin, qmax)

    @pytest.mark.parametrize("qmin,qmax", [(INT32_MIN - 1, 7), (0, INT32_MAX + 1), (-(2**40), 2**40)])
    def test_range_not_within_int32(self, op, qmin, qmax):
        with raises(op, ValueError, f"[quant_min, quant_max] to fit in int32, but got [{qmin}, {qmax}]"):
            call(op, X, S1, Z1, qmin, qmax)

    # dtypes ---------------------------------------------------------------
    @pytest.mark.parametrize("dtype,shown", [(torch.int32, "int32"), (torch.int64, "int64"), (torch.uint8, "uint8"), (torch.bool, "bool")])
    def test_integer_scale_dtype(self, op, dtype, shown):
        with raises(op, TypeError, f"scale to be a floating-point tensor, but got {shown}"):
            call(op, X, torch.ones(1, dtype=dtype), Z1)

    @pytest.mark.parametrize("dtype,shown", [(torch.bool, "bool"), (torch.complex64, "ComplexFloat")])
    def test_zero_point_dtype(self, op, dtype, shown):
        with raises(op, TypeError, f"zero_point to be an integer or floating-point tensor, but got {shown}"):
            call(op, X, S1, torch.zeros(1, dtype=dtype))

    # shapes ---------------------------------------------------------------
    @pytest.mark.parametrize("n", [3, 5, 2])
    def test_scale_length_not_matching_channels(self, op, n):
        with raises(op, ValueError, f"scale to have 4 elements (input.size(1) / group_size = 4 / 1), but got {n}"):
            call(op, X, torch.full((n,), 0.1), torch.zeros(n), axis=1)

    def test_scale_length_not_matching_groups(self, op):
        with raises(op, ValueError, "scale to have 2 elements (input.size(-1) / group_size = 4 / 2), but got 4"):
            call(op, X, S4, Z4, axis=-1, group_size=2)

    def test_zero_point_numel_not_matching_scale(self, op):
        with raises(op, ValueError, "zero_point to have as many elements as scale (4), but got 3"):
            call(op, X, S4, torch.zeros(3), axis=1)

    def test_zero_point_numel_not_matching_per_tensor_scale(self, op):
        with raises(op, ValueError, "zero_point to have as many elements as scale (1), but got 4"):
            call(op, X, S1, Z4)

    @pytest.mark.parametrize("axis", [2, -3, 100])
    def test_axis_out_of_range(self, op, axis):
        with raises(op, ValueError, f"axis in [-2, 2) for a 2-d input, but got {axis}"):
            call(op, X, S4, Z4, axis=axis)

    def test_per_channel_on_zero_d_input(self, op):
        with raises(op, ValueError, "a one-element scale for a 0-d input (per-channel needs a channel axis), but got 2 elements"):
            call(op, torch.tensor(1.0), torch.ones(2), torch.zeros(2))

    @pytest.mark.parametrize("group_size", [3, 8])
    def test_group_size_not_dividing_channels(self, op, group_size):
        with raises(op, ValueError, f"group_size to divide the 4 channels along axis 1, but got group_size={group_size}"):
            call(op, X, torch.full((2,), 0.1), torch.zeros(2), axis=1, group_size=group_size)

    @pytest.mark.parametrize("group_size", [0, -1])
    def test_group_size_below_one(self, op, group_size):
        with raises(op, ValueError, f"group_size >= 1, but got {group_size}"):
            call(op, X, S4, Z4, axis=1, group_size=group_size)
        with raises(op, ValueError, f"group_size >= 1, but got {group_size}"):
            call(op, X, S1, Z1, group_size=group_size)  # even per tensor

    @pytest.mark.parametrize("scale_shape,zp_shape,shown", [((2, 2), (4,), "2-d and 1-d"), ((1, 1), (1, 1), "2-d and 2-d"), ((4,), (1, 4), "1-d and 2-d")])
    def test_qparams_not_vectors(self, op, scale_shape, zp_shape, shown):
        with raises(op, ValueError, f"scale and zero_point to be 0-d or 1-d, but got {shown}"):
            call(op, X, torch.full(scale_shape, 0.1), torch.zeros(zp_shape), axis=1)

    def test_empty_scale(self, op):
        with raises(op, ValueError, "scale to have at least one element, but got none"):
            call(op, torch.zeros(0, 3), torch.ones(0), torch.zeros(0))

    # devices --------------------------------------------------------------
    def test_scale_on_other_device(self, op):
        with raises(op, ValueError, "scale on the input's device (cpu), but got meta"):
            call(op, X, S1.to("meta"), Z1)

    def test_zero_point_on_other_device(self, op):
        with raises(op, ValueError, "zero_point on the input's device (cpu), but got meta"):
            call(op, X, S1, Z1.to("meta"))

    def test_input_on_other_device(self, op):
        x = X.to("meta") if op != "dequantize" else X.to(torch.int32).to("meta")
        with raises(op, ValueError, "scale on the input's device (meta), but got cpu"):
            call(op, x, S1, Z1)


class TestInputDtypeErrors:
    @pytest.mark.parametrize("op", ["fake_quantize", "quantize"])
    @pytest.mark.parametrize("dtype,shown", [(torch.int32, "int32"), (torch.int8, "int8"), (torch.uint8, "uint8"), (torch.int64, "int64"), (torch.bool, "bool")])
    def test_integer_input(self, op, dtype, shown):
        with raises(op, TypeError, f"input to be float32, float64, float16 or bfloat16, but got {shown}"):
            call(op, torch.zeros(3, dtype=dtype), S1, Z1)

    @pytest.mark.parametrize("dtype,shown", [(torch.float32, "float32"), (torch.float64, "float64"), (torch.float16, "float16"), (torch.bool, "bool")])
    def test_dequantize_non_integer_input(self, dtype, shown):
        with raises("dequantize", TypeError, f"input to be an integer tensor, but got {shown}"):
            torch.ops.mcuq.dequantize(torch.zeros(3, dtype=dtype), S1, Z1, -8, 7)

    def test_complex_input(self):
        with raises("fake_quantize", TypeError, "input to be float32, float64, float16 or bfloat16, but got ComplexFloat"):
            torch.ops.mcuq.fake_quantize(torch.zeros(3, dtype=torch.complex64), S1, Z1, -8, 7)


class TestQuantizeDtypeErrors:
    @pytest.mark.parametrize("dtype,shown", [(torch.int64, "int64"), (torch.float32, "float32"), (torch.bool, "bool")])
    def test_dtype_not_narrow_integer(self, dtype, shown):
        with raises("quantize", TypeError, f"dtype to be int8, uint8, int16 or int32, but got {shown}"):
            torch.ops.mcuq.quantize(X, S1, Z1, -8, 7, dtype=dtype)

    @pytest.mark.parametrize(
        "dtype,qmin,qmax,holds",
        [
            (torch.int8, 0, 255, "int8 holds [-128, 127]"),
            (torch.uint8, -1, 7, "uint8 holds [0, 255]"),
            (torch.int16, 0, 65535, "int16 holds [-32768, 32767]"),
            (torch.int8, -129, 0, "int8 holds [-128, 127]"),
        ],
    )
    def test_dtype_too_narrow(self, dtype, qmin, qmax, holds):
        with raises("quantize", ValueError, f"dtype to hold [quant_min, quant_max] = [{qmin}, {qmax}], but {holds}"):
            torch.ops.mcuq.quantize(X, S1, torch.tensor([0]), qmin, qmax, dtype=dtype)

    def test_wrapper_dtype_error(self):
        with raises("quantize", TypeError, "dtype to be int8, uint8, int16 or int32, but got int64"):
            mcuq.quantize(X, S1, Z1, -8, 7, dtype=torch.int64)


class TestDequantizeDtypeErrors:
    @pytest.mark.parametrize("dtype,shown", [(torch.int32, "int32"), (torch.int8, "int8"), (torch.bool, "bool")])
    def test_dtype_not_floating(self, dtype, shown):
        with raises("dequantize", TypeError, f"dtype to be float32, float64, float16 or bfloat16, but got {shown}"):
            torch.ops.mcuq.dequantize(X.to(torch.int8), S1, Z1, -8, 7, dtype=dtype)


class TestBackwardErrors:
    def test_double_backward(self):
        x = torch.randn(3, 4, requires_grad=True)
        s = torch.tensor([0.1], requires_grad=True)
        y = torch.ops.mcuq.fake_quantize(x, s, Z1, -8, 7)
        (gx, gs) = torch.autograd.grad((y * y).sum(), (x, s), create_graph=True)
        with pytest.raises(NotImplementedError, match=re.escape("mcuq::fake_quantize: double backward is not supported")):
            (gx.sum() + gs.sum()).backward()

    def test_private_backward_op_checks(self):
        with raises("fake_quantize", ValueError, "zero_point in [quant_min, quant_max] = [-8, 7], but got 9"):
            torch.ops.mcuq._fake_quantize_backward(X, X, S1, torch.tensor([9]), -8, 7, 0, 1, True, False)
        with raises("fake_quantize", TypeError, "input to be float32, float64, float16 or bfloat16, but got int32"):
            torch.ops.mcuq._fake_quantize_backward(X, X.int(), S1, Z1, -8, 7, 0, 1, False, False)

    def test_error_through_autograd(self):
        x = torch.randn(3, 4, requires_grad=True)
        with raises("fake_quantize", ValueError, "scale to be finite and >= 1.17549e-38 (the smallest normal float32), but got 0"):
            torch.ops.mcuq.fake_quantize(x, torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True), -8, 7)


class TestMetaErrors:
    """The Meta kernels run the same checks (minus those reading values)."""

    def test_fake_quantize_shape_checks(self):
        x = torch.empty(3, 4, device="meta")
        s4, z4, z3 = torch.ones(4, device="meta"), torch.zeros(4, device="meta"), torch.zeros(3, device="meta")
        with raises("fake_quantize", ValueError, "axis in [-2, 2) for a 2-d input, but got 2"):
            torch.ops.mcuq.fake_quantize(x, s4, z4, -8, 7, 2)
        with raises("fake_quantize", ValueError, "zero_point to have as many elements as scale (4), but got 3"):
            torch.ops.mcuq.fake_quantize(x, s4, z3, -8, 7, 1)
        with raises("fake_quantize", ValueError, "quant_min < quant_max, but got quant_min=7, quant_max=-8"):
            torch.ops.mcuq.fake_quantize(x, s4, z4, 7, -8, 1)
        with raises("fake_quantize", TypeError, "input to be float32, float64, float16 or bfloat16, but got int32"):
            torch.ops.mcuq.fake_quantize(x.int(), s4, z4, -8, 7, 1)

    def test_quantize_dtype_checks(self):
        x = torch.empty(3, 4, device="meta")
        s, z = torch.ones(1, device="meta"), torch.zeros(1, dtype=torch.int32, device="meta")
        with raises("quantize", ValueError, "dtype to hold [quant_min, quant_max] = [0, 255], but int8 holds [-128, 127]"):
            torch.ops.mcuq.quantize(x, s, z, 0, 255, dtype=torch.int8)

    def test_dequantize_dtype_checks(self):
        q = torch.empty(3, 4, dtype=torch.int8, device="meta")
        s, z = torch.ones(1, device="meta"), torch.zeros(1, dtype=torch.int32, device="meta")
        with raises("dequantize", TypeError, "dtype to be float32, float64, float16 or bfloat16, but got int8"):
            torch.ops.mcuq.dequantize(q, s, z, -8, 7, dtype=torch.int8)
