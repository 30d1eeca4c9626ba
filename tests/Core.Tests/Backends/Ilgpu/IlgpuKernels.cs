using System.Linq.Expressions;
using System.Reflection;
using BnDist.Core.Backends.Ilgpu;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>
/// The kernels of <see cref="IlgpuBackend"/>, found in the code rather than listed by hand:
/// <see cref="Declared"/> reads the kernel classes (Kernels/*.cs), <see cref="LoadedBy"/> reads
/// what a backend actually loaded (its launcher fields, resolved by ILGPU's
/// <see cref="KernelUtil"/> to the compiled kernel: method, specialization, grouping), and
/// <see cref="RecordInsteadOfLaunching"/> swaps those launchers for recorders, so a training step
/// of any size yields every launch configuration without running a kernel.
/// </summary>
internal static class IlgpuKernels
{
    public const string KernelNamespace = "BnDist.Core.Backends.Ilgpu.Kernels";

    /// <summary>
    /// Every kernel declared in <see cref="KernelNamespace"/>: the non-private static void methods
    /// that take an ArrayView (private ones are helpers the kernels call, like TreeSum).
    /// </summary>
    public static IReadOnlyList<MethodInfo> Declared() =>
        [.. typeof(IlgpuBackend).Assembly.GetTypes()
            .Where(t => t.Namespace == KernelNamespace)
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => !m.IsPrivate && m.ReturnType == typeof(void) && m.GetParameters().Any(p => IsView(p.ParameterType)))
            .OrderBy(Name, StringComparer.Ordinal)];

    /// <summary>One kernel a backend holds: the launcher field, and what ILGPU compiled for it.</summary>
    public sealed record Loaded(FieldInfo Field, Delegate Launcher, CompiledKernel Compiled)
    {
        public MethodInfo Method => Compiled.SourceMethod;

        public string Name => IlgpuKernels.Name(Method);

        public KernelSpecialization Specialization => Compiled.Specialization;

        /// <summary>The entry point as the accelerator loaded it: explicitly grouped (launched with a
        /// KernelConfig) or implicitly grouped (launched with an index).</summary>
        public EntryPointDescription EntryPoint => Compiled.IndexType == IndexType.KernelConfig
            ? EntryPointDescription.FromExplicitlyGroupedKernel(Method)
            : EntryPointDescription.FromImplicitlyGroupedKernel(Method);
    }

    /// <summary>
    /// Every kernel <paramref name="backend"/> holds: each delegate field that ILGPU resolves to a
    /// kernel. A delegate that launches no ILGPU kernel is left out; the coverage test then names
    /// the declared kernel that was not found.
    /// </summary>
    public static IReadOnlyList<Loaded> LoadedBy(IlgpuBackend backend)
    {
        var loaded = new List<Loaded>();
        foreach (var field in typeof(IlgpuBackend).GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            if (!typeof(Delegate).IsAssignableFrom(field.FieldType)) continue;
            if (field.GetValue(backend) is Delegate launcher && launcher.TryGetKernel(out var kernel))
                loaded.Add(new Loaded(field, launcher, kernel.CompiledKernel));
        }
        return loaded;
    }

    /// <summary>One launch: the kernel, its configuration and its arguments (boxed).</summary>
    public sealed record Launch(MethodInfo Kernel, KernelConfig Config, object?[] Arguments)
    {
        public string Name => IlgpuKernels.Name(Kernel);
    }

    /// <summary>
    /// Replaces every kernel launcher of <paramref name="backend"/> by one that records the launch
    /// and runs nothing, and returns the list it records into. The backend's host code (shapes,
    /// chunking, launch configurations, buffer growth) runs as usual; what it reads back from the
    /// device is whatever the buffers held. The backend is for this use only afterwards.
    /// </summary>
    public static List<Launch> RecordInsteadOfLaunching(IlgpuBackend backend)
    {
        var launches = new List<Launch>();
        foreach (var kernel in LoadedBy(backend))
        {
            var parameters = kernel.Field.FieldType.GetMethod("Invoke")!.GetParameters()
                .Select(p => Expression.Parameter(p.ParameterType, p.Name)).ToArray();
            if (parameters.Length == 0 || parameters[0].Type != typeof(KernelConfig))
                throw new InvalidOperationException($"IlgpuBackend.{kernel.Field.Name} ({kernel.Name}) is not launched with a KernelConfig first");
            var method = kernel.Method;
            Action<KernelConfig, object?[]> record = (config, arguments) => launches.Add(new Launch(method, config, arguments));
            var body = Expression.Invoke(Expression.Constant(record), parameters[0],
                Expression.NewArrayInit(typeof(object), parameters.Skip(1).Select(p => Expression.Convert(p, typeof(object)))));
            kernel.Field.SetValue(backend, Expression.Lambda(kernel.Field.FieldType, body, parameters).Compile());
        }
        return launches;
    }

    /// <summary>"GemmKernels.Gemm".</summary>
    public static string Name(MethodInfo method) => $"{method.DeclaringType?.Name}.{method.Name}";

    private static bool IsView(Type type) =>
        type.IsGenericType && type.Assembly == typeof(ArrayView<>).Assembly && type.Name.StartsWith("ArrayView", StringComparison.Ordinal);
}
