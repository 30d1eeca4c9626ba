using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using BnDist.Core.Backends.Ilgpu;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.Cuda;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>
/// CUDA code generation without a GPU. The CPU simulator runs the kernels' IL, so ILGPU's IR,
/// optimizer and PTX generator never see them in a GPU-less test run; here every kernel the
/// backend loads (<see cref="IlgpuKernels.LoadedBy"/>: the method, its specialization and its
/// grouping, as the accelerator compiled it) goes through ILGPU's PTX backend for sm_70, sm_80
/// and sm_90 — no device or driver needed — set up as CudaAccelerator sets it up for a device of
/// that architecture, with two PTX instruction sets: the newest ILGPU knows (what a current
/// driver gets: 8.8 on the 580 driver of the project's H200) and the one the oldest driver that
/// supports the architecture gets. The context is the backend's own, so the optimization level
/// is the one IlgpuDevices uses. ILGPU emits PTX for the lowest architecture that has the
/// capabilities it uses (<see cref="CudaCapabilityContext.TargetArchitecture"/>): sm_80 for an
/// sm_90 device, which the driver compiles for sm_90 when it loads the module.
/// Checked of each PTX module: it targets that architecture, has one entry, and its static shared
/// memory fits the 48 KiB a block gets on sm_70–sm_90 without the opt-in (which ILGPU does not
/// make); it declares no dynamic shared memory (the backend launches with none).
/// What cannot be checked without a GPU: that ptxas accepts the PTX (registers, spills) and that
/// the kernels compute the right thing there — bench/gpu.sh does that where there is a GPU.
/// </summary>
[Collection(IlgpuCollection.Name)]
public sealed class PtxCompilationTests(PtxCompilationTests.Compilation compilation, ITestOutputHelper output)
    : IClassFixture<PtxCompilationTests.Compilation>
{
    /// <summary>Static shared memory a block may declare on sm_70 to sm_90 (more needs a dynamic
    /// allocation and cudaFuncSetAttribute).</summary>
    private const int StaticSharedLimit = 48 * 1024;

    public static TheoryData<string> Architectures() => [.. Compilation.Architectures.Keys];

    [Fact]
    public void TheBackendLoadsEveryKernelDeclaredInKernels_AndNoOther()
    {
        var declared = IlgpuKernels.Declared().Select(IlgpuKernels.Name).ToHashSet();
        var loaded = compilation.Kernels.Select(k => k.Name).ToHashSet();
        output.WriteLine($"{declared.Count} kernels declared, {compilation.Kernels.Count} loaded: {string.Join(", ", loaded.Order(StringComparer.Ordinal))}");
        Assert.NotEmpty(declared);
        Assert.True(declared.SetEquals(loaded),
            $"declared in Kernels/ but not held by IlgpuBackend (loaded lazily, through a wrapper, or not at all?): {string.Join(", ", declared.Except(loaded))}; " +
            $"loaded but not declared as a kernel in {IlgpuKernels.KernelNamespace}: {string.Join(", ", loaded.Except(declared))}");
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void EveryLoadedKernel_CompilesToPtx(string architecture)
    {
        var results = compilation.For(architecture);
        foreach (var r in results)
            output.WriteLine(r.Error is null
                ? $"{r.Kernel,-36} {architecture} ISA {r.InstructionSet}: {r.Ptx!.Length,6} chars of PTX, {r.SharedBytes,5} B shared, {r.Milliseconds,5:F0} ms"
                : $"{r.Kernel,-36} {architecture} ISA {r.InstructionSet}: FAILED {r.Error}");
        Assert.NotEmpty(results);
        var failures = results.Where(r => r.Error is not null).Select(r => $"{r.Kernel} does not compile for {architecture} (PTX ISA {r.InstructionSet}): {r.Error}").ToList();
        string target = new CudaCapabilityContext(Compilation.Architectures[architecture]).TargetArchitecture.ToString().ToLowerInvariant();
        foreach (var r in results.Where(r => r.Error is null))
        {
            if (!Regex.IsMatch(r.Ptx!, $@"^\s*\.target\s+{target}\s*$", RegexOptions.Multiline))
                failures.Add($"{r.Kernel}: the PTX for {architecture} does not say '.target {target}'");
            if (!Regex.IsMatch(r.Ptx!, $@"^\s*\.version\s+{Regex.Escape(r.InstructionSet.ToString())}\s*$", RegexOptions.Multiline))
                failures.Add($"{r.Kernel}: the PTX for {architecture} does not say '.version {r.InstructionSet}'");
            int entries = Regex.Matches(r.Ptx!, @"^\s*\.visible\s+\.entry\s", RegexOptions.Multiline).Count;
            if (entries != 1) failures.Add($"{r.Kernel}: {entries} entry points in its PTX for {architecture}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void EveryLoadedKernel_StaticSharedMemory_FitsA48KiBBlock_AndNoDynamicSharedMemory(string architecture)
    {
        var results = compilation.For(architecture).Where(r => r.Error is null).ToList();
        Assert.NotEmpty(results);
        var failures = new List<string>();
        foreach (var r in results)
        {
            if (r.SharedBytes > StaticSharedLimit)
                failures.Add($"{r.Kernel} declares {r.SharedBytes} bytes of static shared memory for {architecture} (PTX ISA {r.InstructionSet}), over the {StaticSharedLimit} of a block");
            if (r.DynamicShared)
                failures.Add($"{r.Kernel} declares dynamic shared memory for {architecture} (PTX ISA {r.InstructionSet}), which IlgpuBackend never sizes in its launches");
        }
        foreach (var r in results.Where(r => r.SharedBytes > 0).DistinctBy(r => r.Kernel))
            output.WriteLine($"{r.Kernel}: {r.SharedBytes} bytes of static shared memory");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>The PTX of every loaded kernel for every architecture and instruction set, compiled
    /// once per test class; a kernel that fails keeps its exception, so each test names it.</summary>
    public sealed class Compilation : IDisposable
    {
        public static readonly IReadOnlyDictionary<string, CudaArchitecture> Architectures = new Dictionary<string, CudaArchitecture>
        {
            ["sm_70"] = CudaArchitecture.SM_70,
            ["sm_80"] = CudaArchitecture.SM_80,
            ["sm_90"] = CudaArchitecture.SM_90,
        };

        /// <summary>Where to write each module (KERNEL.ARCH.isaISA.ptx), for ptxas where there is one.</summary>
        public const string DumpVariable = "BNDIST_PTX_DIR";

        private readonly IlgpuBackend _backend;
        private readonly Dictionary<string, List<Result>> _results = [];

        public Compilation()
        {
            _backend = IlgpuDevices.OpenCpuSimulator();
            Kernels = IlgpuKernels.LoadedBy(_backend);
            foreach (var (name, architecture) in Architectures)
            {
                var list = new List<Result>();
                // As CudaDevice and CudaAccelerator do: capabilities and the backend from the device's
                // architecture, the instruction set from the architecture the PTX targets.
                var capabilities = new CudaCapabilityContext(architecture);
                foreach (var isa in InstructionSets(architecture, capabilities.TargetArchitecture))
                {
                    using var ptx = new PTXBackend(_backend.Accelerator.Context, capabilities, architecture, isa, null);
                    foreach (var kernel in Kernels)
                    {
                        var result = Compile(ptx, kernel, isa);
                        list.Add(result);
                        if (Environment.GetEnvironmentVariable(DumpVariable) is { Length: > 0 } dir && result.Ptx is not null)
                        {
                            Directory.CreateDirectory(dir);
                            File.WriteAllText(Path.Combine(dir, $"{kernel.Name}.{name}.isa{isa}.ptx"), result.Ptx);
                        }
                    }
                }
                _results[name] = list;
            }
        }

        internal IReadOnlyList<IlgpuKernels.Loaded> Kernels { get; }

        public IReadOnlyList<Result> For(string architecture) => _results[architecture];

        public void Dispose() => _backend.Dispose();

        /// <summary>The PTX ISA for PTX of <paramref name="target"/> that a device of
        /// <paramref name="architecture"/> gets on the newest driver (the newest ISA ILGPU knows) and
        /// on the oldest driver that supports the device.</summary>
        private static IEnumerable<CudaInstructionSet> InstructionSets(CudaArchitecture architecture, CudaArchitecture target)
        {
            var newest = CudaAccelerator.GetInstructionSet(target, CudaDriverVersion.FromMajorMinor(99, 0));
            var oldest = CudaAccelerator.GetInstructionSet(target, CudaDriverVersionUtils.GetMinimumDriverVersion(architecture));
            return newest == oldest ? [newest] : [newest, oldest];
        }

        private static Result Compile(PTXBackend ptx, IlgpuKernels.Loaded kernel, CudaInstructionSet isa)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                var compiled = (PTXCompiledKernel)ptx.Compile(kernel.EntryPoint, kernel.Specialization);
                return new Result(kernel.Name, isa, compiled.PTXAssembly, null, clock.Elapsed.TotalMilliseconds);
            }
            catch (Exception e)
            {
                return new Result(kernel.Name, isa, null, Describe(e), clock.Elapsed.TotalMilliseconds);
            }
        }
    }

    /// <summary>"InternalCompilerException: … ← NotSupportedIntrinsicException: …": ILGPU wraps the cause.</summary>
    private static string Describe(Exception e)
    {
        var parts = new List<string>();
        for (var x = e; x is not null; x = x.InnerException) parts.Add($"{x.GetType().Name}: {x.Message}");
        return string.Join(" ← ", parts);
    }

    /// <summary>One kernel compiled for one architecture and instruction set: its PTX, or why not.</summary>
    public sealed record Result(string Kernel, CudaInstructionSet InstructionSet, string? Ptx, string? Error, double Milliseconds)
    {
        /// <summary>Bytes of the <c>.shared</c> arrays the module declares (static shared memory).</summary>
        public long SharedBytes => Ptx is null ? 0 : Regex.Matches(Ptx, @"^\s*\.shared\s+(?:\.align\s+\d+\s+)?\.(?:b|u|s|f)(\d+)\s+[\w$]+\[(\d+)\]", RegexOptions.Multiline)
            .Sum(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) / 8 * long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));

        /// <summary>Whether the module declares dynamic shared memory (an <c>.extern .shared</c> array).</summary>
        public bool DynamicShared => Ptx is not null && Regex.IsMatch(Ptx, @"^\s*\.extern\s+\.shared\b", RegexOptions.Multiline);
    }
}
