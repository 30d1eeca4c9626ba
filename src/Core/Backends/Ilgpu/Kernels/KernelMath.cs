using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// Math the kernels need that ILGPU does not provide on every accelerator without extra
/// libraries (Math.Exp on CUDA needs LibDevice or ILGPU.Algorithms): e^x in float64 from
/// plain arithmetic, so softmax and sigmoid compile, and round the same way, on the CPU
/// simulator, CUDA and OpenCL.
/// </summary>
internal static class KernelMath
{
    private const double InvLn2 = 1.4426950408889634;
    private const double Ln2Hi = 6.93147180369123816490e-01; // ln 2 split so k·Ln2Hi is exact
    private const double Ln2Lo = 1.90821492927058770002e-10;

    /// <summary>
    /// e^x: x = k·ln2 + r with |r| ≤ ln2/2 (Cody–Waite reduction), e^r by its Taylor series to
    /// r¹³/13! (truncation ≤ 0.347¹⁴/14! ≈ 4e-18, below float64's 1.1e-16), times 2^k built
    /// from the exponent bits. A few float64 ulps from Math.Exp; 0 below −745, ∞ above 709.78.
    /// </summary>
    public static double Exp(double x)
    {
        if (x < -745.2) return 0.0;
        if (x > 709.78) return double.PositiveInfinity;
        double t = x * InvLn2;
        int k = (int)(t < 0 ? t - 0.5 : t + 0.5); // round to nearest
        double r = x - k * Ln2Hi - k * Ln2Lo;
        double p = 1.0 / 6227020800.0;            // 1/13!
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        // 2^k as two normal powers of two, so k down to −1075 (subnormal results) stays exact.
        int k1 = k / 2, k2 = k - k1;
        return p * Pow2(k1) * Pow2(k2);
    }

    /// <summary>2^k for −1022 ≤ k ≤ 1023, from the float64 exponent field.</summary>
    private static double Pow2(int k) => Interop.IntAsFloat((ulong)(k + 1023) << 52);
}
