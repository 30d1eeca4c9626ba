using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using BnDist.Core.Checkpoints;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Checkpoints;

/// <summary>
/// Cross-checks the writer against an independent Python reader
/// (interop/check_safetensors.py: struct + json from the spec, plus the `safetensors` package
/// when it is importable). The script prints per-tensor dtype, shape, offsets, element count,
/// sum and index-weighted sum; these are compared exactly with sums computed here from the
/// source values, accumulated in the same order in doubles (floats) or exact integers.
/// </summary>
/// <remarks>
/// Needs python3 (/usr/bin/python3, else python3 on PATH). Where there is none the tests return
/// early and say so in the test output: xunit 2 has no dynamic skip, so they count as passed.
/// </remarks>
public sealed class SafeTensorsInteropTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bndist-st-py-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed record Expected(string DType, long[] Shape, bool IsFloat, BigInteger IntSum, BigInteger IntWSum, double Sum, double WSum);

    [Fact]
    public void PythonReader_SeesTheSameNamesShapesAndNumbers()
    {
        if (FindPython() is not { } python || FindScript() is not { } script)
        {
            output.WriteLine("python3 or check_safetensors.py not found: cross-check not run");
            return;
        }
        var f = new SafeTensorsFile();
        var expected = new Dictionary<string, Expected>();
        f.SetMetadata("format", "pt");
        f.SetMetadata("epoch", "3");
        f.SetMetadata("note", "ünïcode ✓");

        float[] w = Enumerable.Range(0, 4 * 3 * 3 * 3).Select(i => (float)(Math.Sin(i * 0.37) * Math.Pow(10, i % 7 - 3))).ToArray();
        f.AddF32("layer1.conv.weight", [4, 3, 3, 3], w);
        expected["layer1.conv.weight"] = Floats("F32", [4, 3, 3, 3], w.Select(v => (double)v));
        double[] bias = [Math.PI, -1.5e3, 0.1, 1e-310, 7, -0.0, 2.5e10];
        f.AddF64("head.bias", [7], bias);
        expected["head.bias"] = Floats("F64", [7], bias);
        f.AddF32("empty", [0], []);
        expected["empty"] = Floats("F32", [0], []);
        f.AddI64("bn.num_batches_tracked", [], [123_456_789_012]);
        expected["bn.num_batches_tracked"] = Ints("I64", [], [123_456_789_012]);
        long[] ids = [long.MaxValue, long.MinValue, -1, 0, 42, long.MaxValue / 3];
        f.AddI64("ids", [2, 3], ids);
        expected["ids"] = Ints("I64", [2, 3], ids.Select(v => (BigInteger)v));
        int[] steps = [int.MinValue, 5, int.MaxValue];
        f.AddI32("steps", [3], steps);
        expected["steps"] = Ints("I32", [3], steps.Select(v => (BigInteger)v));

        Half[] halves = [(Half)1.5, (Half)(-0.000123), Half.MaxValue, (Half)3.14159, Half.Epsilon];
        f.Add("half", SafeDType.F16, [5], halves.SelectMany(h => BitConverter.GetBytes(h)).ToArray());
        expected["half"] = Floats("F16", [5], halves.Select(h => (double)h));
        float[] bf = [1f, -3.140625f, 1e4f]; // bf16 keeps the top 16 bits of each single
        f.Add("bf", SafeDType.BF16, [3], bf.SelectMany(v => BitConverter.GetBytes(v)[2..]).ToArray());
        expected["bf"] = Floats("BF16", [3], bf.Select(v => (double)BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v) & unchecked((int)0xFFFF0000))));
        f.Add("mask", SafeDType.BOOL, [2, 2], [1, 0, 1, 1]);
        expected["mask"] = Ints("BOOL", [2, 2], [1, 0, 1, 1]);
        f.Add("bytes", SafeDType.U8, [3], [0, 200, 255]);
        expected["bytes"] = Ints("U8", [3], [0, 200, 255]);
        f.Add("shorts", SafeDType.I16, [2], [0x00, 0x80, 0xFF, 0x7F]);
        expected["shorts"] = Ints("I16", [2], [short.MinValue, short.MaxValue]);

        string path = Path.Combine(_dir, "cross.safetensors");
        f.WriteAtomic(path);
        var (code, stdout, stderr) = Run(python, script, path);
        Assert.True(code == 0, $"python reader failed ({code}): {stderr}");
        output.WriteLine(stdout);

        using var doc = JsonDocument.Parse(stdout);
        JsonElement root = doc.RootElement;
        output.WriteLine("reader: " + root.GetProperty("reader").GetString());
        Assert.Equal(BitConverter.ToInt64(File.ReadAllBytes(path), 0), root.GetProperty("header_length").GetInt64());
        var metadata = root.GetProperty("metadata").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        Assert.Equal(f.Metadata.OrderBy(kv => kv.Key), metadata.OrderBy(kv => kv.Key));

        var tensors = root.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(f.Tensors.OrderByDescending(t => t.DType.SizeInBytes()).ThenBy(t => t.Name, StringComparer.Ordinal).Select(t => t.Name),
                     tensors.Select(t => t.GetProperty("name").GetString()));
        foreach (JsonElement t in tensors)
        {
            string name = t.GetProperty("name").GetString()!;
            Expected e = expected[name];
            Assert.Equal(e.DType, t.GetProperty("dtype").GetString());
            Assert.Equal(e.Shape, t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
            Assert.Equal(e.Shape.Aggregate(1L, (a, b) => a * b), t.GetProperty("count").GetInt64());
            if (e.IsFloat)
            {
                Assert.Equal(e.Sum, t.GetProperty("sum").GetDouble());
                Assert.Equal(e.WSum, t.GetProperty("wsum").GetDouble());
            }
            else
            {
                Assert.Equal(e.IntSum, BigInteger.Parse(t.GetProperty("sum").GetRawText()));
                Assert.Equal(e.IntWSum, BigInteger.Parse(t.GetProperty("wsum").GetRawText()));
            }
        }
    }

    [Fact]
    public void PythonReader_RejectsATruncatedFile()
    {
        if (FindPython() is not { } python || FindScript() is not { } script)
        {
            output.WriteLine("python3 or check_safetensors.py not found: cross-check not run");
            return;
        }
        var f = new SafeTensorsFile();
        f.AddF32("w", [4], [1, 2, 3, 4]);
        string path = Path.Combine(_dir, "cut.safetensors");
        f.WriteAtomic(path);
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        var (code, _, stderr) = Run(python, script, path);
        Assert.Equal(1, code);
        Assert.Contains("tensor w", stderr);
    }

    private static Expected Floats(string dtype, long[] shape, IEnumerable<double> values)
    {
        double sum = 0, wsum = 0;
        int i = 0;
        foreach (double v in values)
        {
            sum += v;
            wsum += (i + 1) * v; // Python: (i + 1) * v, the int converted exactly to a double
            i++;
        }
        return new Expected(dtype, shape, true, 0, 0, sum, wsum);
    }

    private static Expected Ints(string dtype, long[] shape, IEnumerable<BigInteger> values)
    {
        BigInteger sum = 0, wsum = 0;
        int i = 0;
        foreach (BigInteger v in values) { sum += v; wsum += (i + 1) * v; i++; }
        return new Expected(dtype, shape, false, sum, wsum, 0, 0);
    }

    private static (int Code, string Stdout, string Stderr) Run(string python, string script, string file)
    {
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(file);
        psi.Environment["PYTHONIOENCODING"] = "utf-8";
        using var p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(60_000))
        {
            p.Kill();
            throw new TimeoutException("python reader did not finish in 60 s");
        }
        return (p.ExitCode, stdout, stderr.Result);
    }

    private static string? FindPython()
    {
        if (File.Exists("/usr/bin/python3")) return "/usr/bin/python3";
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
        {
            foreach (string exe in new[] { "python3", "python3.exe" })
            {
                string candidate = Path.Combine(dir, exe);
                if (File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }

    private static string? FindScript([CallerFilePath] string thisFile = "")
    {
        const string relative = "interop/check_safetensors.py";
        string beside = Path.Combine(Path.GetDirectoryName(thisFile) ?? "", relative);
        if (File.Exists(beside)) return beside;
        // Source paths can be mapped away (deterministic CI builds): look upward from the test binaries.
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "Core.Tests", "Checkpoints", relative);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
