using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace BnDist.Core.Backends.Cpu;

/// <summary>The instruction sets the CPU kernels are written for, widest first.</summary>
public enum CpuIsa
{
    /// <summary>No usable vector hardware (or <c>DOTNET_EnableHWIntrinsic=0</c>): plain scalar loops.</summary>
    Scalar,

    /// <summary>128-bit vectors: SSE4.1 on x86 (e.g. <c>DOTNET_EnableAVX2=0</c>), NEON on ARM64.</summary>
    Vector128,

    /// <summary>AVX2 + FMA, 256-bit vectors, 16 ymm registers (Haswell and later, Zen 1–3).</summary>
    Avx2,

    /// <summary>AVX-512F, 512-bit vectors, 32 zmm registers (Skylake-X, Ice Lake, Zen 4).</summary>
    Avx512,
}

/// <summary>
/// The kernel path of this process, chosen once at start from what the hardware and the runtime switches
/// (<c>DOTNET_EnableAVX512</c> — .NET 10 no longer reads <c>DOTNET_EnableAVX512F</c> —,
/// <c>DOTNET_EnableAVX2</c>, <c>DOTNET_EnableHWIntrinsic</c>, <c>DOTNET_PreferredVectorBitWidth</c>) allow.
/// </summary>
/// <remarks>
/// <see cref="Current"/> is an expression over <c>IsSupported</c>/<c>IsHardwareAccelerated</c>, which the
/// JIT treats as constants: every kernel that branches on it is compiled with only its own path left, even in
/// methods marked <see cref="MethodImplOptions.AggressiveOptimization"/> (which skip tiering and so would not
/// see a <c>static readonly</c> field as a constant). The kernels test the same flags, so a path is taken
/// exactly when <see cref="Current"/> names it.
/// </remarks>
public static class CpuDispatch
{
    /// <summary>The widest path this process runs.</summary>
    public static CpuIsa Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => IsAvx512 ? CpuIsa.Avx512 : IsAvx2 ? CpuIsa.Avx2 : IsVector128 ? CpuIsa.Vector128 : CpuIsa.Scalar;
    }

    /// <summary>AVX-512F with 512-bit vectors accelerated.</summary>
    internal static bool IsAvx512
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Avx512F.IsSupported && Vector512.IsHardwareAccelerated;
    }

    /// <summary>AVX2 and FMA with 256-bit vectors accelerated (and not AVX-512).</summary>
    internal static bool IsAvx2
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => !IsAvx512 && Avx2.IsSupported && Fma.IsSupported && Vector256.IsHardwareAccelerated;
    }

    /// <summary>128-bit vectors accelerated (SSE4.1 on x86, NEON on ARM64), and neither of the wider paths.</summary>
    internal static bool IsVector128
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => !IsAvx512 && !IsAvx2 && Vector128.IsHardwareAccelerated && (Sse41.IsSupported || AdvSimd.IsSupported);
    }

    /// <summary>Whether a fused multiply-add is a hardware instruction (FMA3 on x86, NEON on ARM64). Where it is
    /// not, <see cref="MathF.FusedMultiplyAdd"/> is computed in software: still exact, only slower.</summary>
    internal static bool HasFma
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Fma.IsSupported || AdvSimd.IsSupported;
    }

    /// <summary>A one-line description for logs and benchmarks, e.g. "Avx2 (256-bit vectors, FMA)".</summary>
    public static string Describe() => Current switch
    {
        CpuIsa.Avx512 => "Avx512 (512-bit vectors, FMA)",
        CpuIsa.Avx2 => "Avx2 (256-bit vectors, FMA)",
        CpuIsa.Vector128 => $"Vector128 (128-bit vectors, {(AdvSimd.IsSupported ? "NEON" : "SSE4.1")}{(HasFma ? ", FMA" : "")})",
        _ => $"Scalar{(HasFma ? " (FMA)" : "")}",
    };
}
