using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using BnDist.Core.Backends.Cpu;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Backends.Cpu;

/// <summary>
/// The dispatch picks the widest path the runtime accelerates, so a test run under
/// <c>DOTNET_EnableAVX512=0</c>, <c>DOTNET_EnableAVX2=0</c> or <c>DOTNET_EnableHWIntrinsic=0</c> (see the
/// Makefile's <c>test</c> target) really runs the AVX2, 128-bit or scalar kernels.
/// </summary>
public sealed class CpuDispatchTests(ITestOutputHelper output)
{
    [Fact]
    public void ChosenPath_IsTheWidestOneTheRuntimeAccelerates()
    {
        output.WriteLine($"CPU kernels: {CpuDispatch.Describe()}; Vector512 {Vector512.IsHardwareAccelerated}, " +
            $"Vector256 {Vector256.IsHardwareAccelerated}, Vector128 {Vector128.IsHardwareAccelerated}, " +
            $"AVX-512F {Avx512F.IsSupported}, AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported}");
        CpuIsa expected = Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? CpuIsa.Avx512
            : Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported ? CpuIsa.Avx2
            : Vector128.IsHardwareAccelerated ? CpuIsa.Vector128
            : CpuIsa.Scalar;
        Assert.Equal(expected, CpuDispatch.Current);
    }

    /// <summary>
    /// The runtime switches the Makefile's <c>test</c> target sets each force a narrower path: the process must
    /// actually run it (on x86 every 64-bit CPU the runtime supports has SSE4.1; ARM64 has NEON). Skipped
    /// without any switch. (This test found that .NET 10 ignores <c>DOTNET_EnableAVX512F=0</c>.)
    /// </summary>
    [SkippableFact]
    public void RuntimeSwitch_ForcesTheNarrowerPath()
    {
        static bool Off(string name) => Environment.GetEnvironmentVariable(name) == "0";
        // .NET 10 reads DOTNET_EnableAVX512; DOTNET_EnableAVX512F (earlier runtimes) alone no longer turns AVX-512 off.
        bool no512 = Off("DOTNET_EnableAVX512") || (Environment.Version.Major < 10 && Off("DOTNET_EnableAVX512F"));
        Skip.IfNot(Off("DOTNET_EnableHWIntrinsic") || Off("DOTNET_EnableAVX2") || no512,
            "no DOTNET_Enable* switch set: the path is the machine's own");
        output.WriteLine($"CPU kernels: {CpuDispatch.Describe()}");
        if (Off("DOTNET_EnableHWIntrinsic"))
            Assert.Equal(CpuIsa.Scalar, CpuDispatch.Current);
        else if (Off("DOTNET_EnableAVX2"))
            Assert.Equal(CpuIsa.Vector128, CpuDispatch.Current);
        else if (Avx2.IsSupported && Fma.IsSupported)
            Assert.Equal(CpuIsa.Avx2, CpuDispatch.Current);
        else
            Assert.NotEqual(CpuIsa.Avx512, CpuDispatch.Current);
    }
}
