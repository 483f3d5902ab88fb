// math.wgsl: exp, ln and pow written with + - * / floor and bit casts only, operation
// for operation the twins of src/math.rs (WGSL's built-in exp, log and pow differ from
// Rust's by up to tens of ULP on lavapipe; these agree bit for bit). No fma: lavapipe
// never fuses, and the Rust reference never calls mul_add.

const LN2_HI: f32 = 0.69314575f;
const LN2_LO: f32 = 1.4286068e-6f;
const LOG2_E: f32 = 1.4426950408889634f;
const SQRT_2: f32 = 1.4142135623730951f;

// 0 at run time, unknown to the shader compiler: every kernel entry point sets it from
// `params.zero` before calling these functions. naga marks no arithmetic as exact
// (SPIR-V NoContraction), so Mesa's compiler may apply inexact algebra across a call,
// e.g. (a·2.5)·LOG2_E → a·(2.5·LOG2_E), which moves k = floor(x·log2 e + 0.5) across a
// rounding boundary once in ~10^5 arguments (measured on lavapipe). OR-ing the argument's
// bits with this zero hides where it came from; the Rust twin needs no such barrier.
var<private> opaque_zero: u32;

// x itself, opaque to the compiler's algebra (see opaque_zero).
fn opaque(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | opaque_zero);
}

// Exponential relaxation towards x_inf over one step: x_inf + (x - x_inf)·decay
// (math::relax). Written plainly, Mesa's compiler recognises the pattern as a lerp and
// evaluates it with a fused multiply-add (measured: 1 ULP off the unfused Rust result);
// the opaque difference hides the pattern.
fn relax(x_inf: f32, x: f32, decay: f32) -> f32 {
    return x_inf + opaque(x - x_inf) * decay;
}

// e^x: 0 below -87 (subnormal results flushed), +inf above 88 (math::exp_sw).
fn exp_sw(x_in: f32) -> f32 {
    let x = opaque(x_in);
    if (x < -87.0f) {
        return 0.0f;
    }
    if (x > 88.0f) {
        return bitcast<f32>(0x7F800000u);
    }
    // k = floor(x·log2 e + 0.5), by truncation and a correction, as the Rust twin.
    let kf = x * LOG2_E + 0.5f;
    var k = f32(i32(kf));
    if (k > kf) {
        k = k - 1.0f;
    }
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0f
        + r * (1.0f
            + r * (0.5f
                + r * (0.16666667f
                    + r * (0.041666668f
                        + r * (0.008333334f + r * (0.0013888889f + r * 0.0001984127f))))));
    let scale = bitcast<f32>(u32(i32(k) + 127) << 23u);
    return p * scale;
}

// ln x for positive normal x; -inf for 0 and subnormals, NaN below 0 (math::ln_sw).
fn ln_sw(x_in: f32) -> f32 {
    let x = opaque(x_in);
    if (x < 1.17549435e-38f) {
        if (x < 0.0f) {
            return bitcast<f32>(0x7FC00000u);
        }
        return bitcast<f32>(0xFF800000u);
    }
    if (x > 3.40282347e38f) {
        return x;
    }
    let bits = bitcast<u32>(x);
    var e = f32(i32(bits >> 23u) - 127);
    var m = bitcast<f32>((bits & 0x007FFFFFu) | 0x3F800000u);
    if (m > SQRT_2) {
        m = m * 0.5f;
        e = e + 1.0f;
    }
    let f = m - 1.0f;
    let s = f / (2.0f + f);
    let z = s * s;
    let t = z * (0.6666667f + z * (0.4f + z * (0.2857143f + z * (0.22222222f + z * 0.18181818f))));
    return e * LN2_HI + ((f - s * (f - t)) + e * LN2_LO);
}

// x^y: integer powers 1-4 by multiplication in a fixed order, else e^{y·ln x} (math::pow_sw).
fn pow_sw(x_in: f32, y: f32) -> f32 {
    let x = opaque(x_in);
    if (y == 1.0f) {
        return x;
    }
    if (y == 2.0f) {
        return x * x;
    }
    if (y == 3.0f) {
        return (x * x) * x;
    }
    if (y == 4.0f) {
        let x2 = x * x;
        return x2 * x2;
    }
    if (x == 0.0f) {
        if (y > 0.0f) {
            return 0.0f;
        }
        return bitcast<f32>(0x7F800000u);
    }
    return exp_sw(y * ln_sw(x));
}
