using System.Text;
using System.Text.Json.Nodes;
using BnDist.Core.Checkpoints;

namespace BnDist.Core.Tests.Checkpoints;

/// <summary>Round trips, the exact byte layout the writer produces, typed getters and atomic writes.</summary>
public sealed class SafeTensorsFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bndist-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static SafeTensorsFile Sample()
    {
        var f = new SafeTensorsFile();
        f.SetMetadata("format", "pt");
        f.SetMetadata("epoch", "7");
        f.SetMetadata("note", "ünïcode ✓ \"quoted\" <tag>");
        f.AddF32("conv1.weight", [2, 1, 2, 2], [0.5f, -1.25f, 3e-8f, float.MaxValue, -0f, 1f, 2f, float.Epsilon]);
        f.AddF64("head.bias", [3], [Math.PI, -1e300, 0.1]);
        f.AddI64("bn1.num_batches_tracked", [], [long.MinValue + 1]);
        f.AddI32("steps", [2], [int.MaxValue, -7]);
        f.AddF32("empty", [0], []);
        f.AddF64("scalar", [], [2.5]);
        f.AddF32("zero_inside", [3, 0, 2], []);
        f.Add("mask", SafeDType.BOOL, [3], [1, 0, 1]);
        f.Add("bytes", SafeDType.U8, [5], [0, 1, 127, 128, 255]);
        f.Add("half", SafeDType.F16, [2], [0x00, 0x3C, 0x00, 0xC0]);   // 1.0, -2.0
        f.Add("brain", SafeDType.BF16, [2], [0x80, 0x3F, 0x49, 0x40]); // 1.0, ~3.14
        f.Add("shorts", SafeDType.I16, [2], [0xFF, 0x7F, 0x00, 0x80]);
        return f;
    }

    private static byte[] ToBytes(SafeTensorsFile f)
    {
        var ms = new MemoryStream();
        f.Write(ms);
        return ms.ToArray();
    }

    private static void AssertSameContent(SafeTensorsFile expected, SafeTensorsFile actual)
    {
        Assert.Equal(expected.Metadata.OrderBy(kv => kv.Key), actual.Metadata.OrderBy(kv => kv.Key));
        Assert.Equal(expected.Tensors.Select(t => t.Name).Order(), actual.Tensors.Select(t => t.Name).Order());
        foreach (SafeTensor e in expected.Tensors)
        {
            SafeTensor a = actual.Get(e.Name);
            Assert.Equal(e.DType, a.DType);
            Assert.Equal(e.Shape, a.Shape);
            Assert.Equal(e.Data, a.Data);
        }
    }

    [Fact]
    public void RoundTrip_PreservesDtypesShapesMetadataAndBytesExactly()
    {
        SafeTensorsFile original = Sample();
        byte[] bytes = ToBytes(original);
        SafeTensorsFile back = SafeTensorsFile.Read(new MemoryStream(bytes), "mem.safetensors");

        AssertSameContent(original, back);
        Assert.Equal("mem.safetensors", back.SourceName);
        Assert.Equal(bytes, ToBytes(back)); // deterministic: rewriting gives the identical file
        Assert.Equal(original.GetF32("conv1.weight", [2, 1, 2, 2]), back.GetF32("conv1.weight", [2, 1, 2, 2]));
        Assert.Equal([Math.PI, -1e300, 0.1], back.GetF64("head.bias", [3]));
        Assert.Equal([long.MinValue + 1], back.GetI64("bn1.num_batches_tracked", []));
        Assert.Equal([int.MaxValue, -7], back.GetI32("steps", [2]));
        Assert.Empty(back.GetF32("empty", [0]));
        Assert.Equal([2.5], back.GetF64("scalar", []));
        // -0f keeps its sign bit and float.Epsilon (a subnormal) survives.
        Assert.True(float.IsNegative(back.GetF32("conv1.weight", [2, 1, 2, 2])[4]));
        Assert.Equal(float.Epsilon, back.GetF32("conv1.weight", [2, 1, 2, 2])[7]);
    }

    [Fact]
    public void RoundTrip_ThroughFiles_AndEmptyFile()
    {
        string path = Path.Combine(_dir, "model.safetensors");
        Sample().WriteAtomic(path);
        AssertSameContent(Sample(), SafeTensorsFile.Read(path));

        new SafeTensorsFile().WriteAtomic(path);
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(16, bytes.Length); // length 8, then "{}" padded to 8
        Assert.Equal("{}      ", Encoding.UTF8.GetString(bytes, 8, 8));
        SafeTensorsFile empty = SafeTensorsFile.Read(path);
        Assert.Empty(empty.Tensors);
        Assert.Empty(empty.Metadata);
    }

    [Fact]
    public void Header_ByteLevel_MatchesSpecAndReferenceWriter()
    {
        var f = new SafeTensorsFile();
        f.SetMetadata("format", "pt");
        f.AddF32("a", [2], [1.0f, -2.0f]);
        f.AddI64("b", [], [-3]);
        byte[] bytes = ToBytes(f);

        const string json = """{"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""";
        Assert.Equal(138, json.Length);
        // 8-byte little-endian header length: 138 rounded up to 144 = 0x90.
        Assert.Equal(new byte[] { 0x90, 0, 0, 0, 0, 0, 0, 0 }, bytes[..8]);
        Assert.Equal(8 + 144 + 16, bytes.Length);
        string header = Encoding.UTF8.GetString(bytes, 8, 144);
        Assert.Equal(0, header.Length % 8);
        Assert.Equal(json + "      ", header); // padded with exactly 6 spaces
        var expected = JsonNode.Parse("""
            { "__metadata__": { "format": "pt" },
              "a": { "dtype": "F32", "shape": [2], "data_offsets": [8, 16] },
              "b": { "dtype": "I64", "shape": [], "data_offsets": [0, 8] } }
            """);
        Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(header)), header);
        // Data buffer right after the header: b (8-byte type first) then a, little-endian.
        Assert.Equal(new byte[] { 0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, bytes[152..160]); // -3L
        Assert.Equal(new byte[] { 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0 }, bytes[160..168]); // 1f, -2f
    }

    [Fact]
    public void Writer_OrdersBySizeThenName_SoEveryTensorIsAlignedInTheFile()
    {
        byte[] bytes = ToBytes(Sample());
        long headerLength = BitConverter.ToInt64(bytes, 0);
        Assert.Equal(0, headerLength % 8);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength))!.AsObject();
        // Header entries come in layout order, each starting where the previous one ended.
        var order = header.Where(kv => kv.Key != "__metadata__")
            .Select(kv => (Name: kv.Key, Size: SizeOf((string)kv.Value!["dtype"]!),
                           Begin: (long)kv.Value!["data_offsets"]![0]!, End: (long)kv.Value!["data_offsets"]![1]!))
            .ToList();
        long covered = 0;
        foreach (var t in order)
        {
            Assert.Equal(covered, t.Begin);
            covered = t.End;
            Assert.True((8 + headerLength + t.Begin) % t.Size == 0, $"{t.Name} misaligned");
        }
        Assert.Equal(bytes.Length - 8 - headerLength, covered);
        Assert.Equal(order.OrderByDescending(x => x.Size).ThenBy(x => x.Name, StringComparer.Ordinal).Select(x => x.Name),
                     order.Select(x => x.Name));
        Assert.Equal("__metadata__", header.First().Key);

        static int SizeOf(string dtype) => SafeDTypeExtensions.TryParse(dtype, out SafeDType d) ? d.SizeInBytes() : throw new Exception(dtype);
    }

    [Fact]
    public void Reader_AcceptsUnpaddedHeaderInAnyKeyOrder_WithUnknownEntryKeysAndNullMetadata()
    {
        // As another writer might produce it: no padding, whitespace, odd key order, extra key.
        string json = """ {"x":{"data_offsets":[0,4],"shape":[1],"dtype":"I32","extra":true},"__metadata__":null}""".Trim();
        byte[] head = Encoding.UTF8.GetBytes(json);
        byte[] bytes = [.. BitConverter.GetBytes((ulong)head.Length), .. head, 0x2A, 0, 0, 0];
        SafeTensorsFile f = SafeTensorsFile.Read(new MemoryStream(bytes), "other.safetensors");
        Assert.Equal([42], f.GetI32("x", [1]));
        Assert.Empty(f.Metadata);
    }

    [Fact]
    public void GetTyped_WrongShapeDtypeOrMissing_NamesTheTensor()
    {
        var f = new SafeTensorsFile();
        f.AddF32("bn1.running_var", [64], new float[64]);
        f.AddF64("bn1.running_mean", [32], new double[32]);

        var shape = Assert.Throws<InvalidDataException>(() => f.GetF32("bn1.running_var", [32]));
        Assert.Equal("bn1.running_var: expected F32 [32], file has F32 [64]", shape.Message);
        var dtype = Assert.Throws<InvalidDataException>(() => f.GetF32("bn1.running_mean", [32]));
        Assert.Equal("bn1.running_mean: expected F32 [32], file has F64 [32]", dtype.Message);
        var missing = Assert.Throws<InvalidDataException>(() => f.GetF32("fc.weight", [10, 5]));
        Assert.Equal("fc.weight: expected F32 [10,5], file has no such tensor", missing.Message);
        Assert.Throws<KeyNotFoundException>(() => f.Get("fc.weight"));

        // After a read, the file name leads the message.
        var read = SafeTensorsFile.Read(new MemoryStream(ToBytes(f)), "ckpt/epoch3.safetensors");
        var e = Assert.Throws<InvalidDataException>(() => read.GetI64("bn1.running_var", [64]));
        Assert.Equal("ckpt/epoch3.safetensors: bn1.running_var: expected I64 [64], file has F32 [64]", e.Message);
    }

    [Fact]
    public void Add_RejectsDuplicatesReservedNameAndWrongDataLength()
    {
        var f = new SafeTensorsFile();
        f.AddF32("w", [2], [1, 2]);
        Assert.Contains("already", Assert.Throws<ArgumentException>(() => f.AddF32("w", [2], [1, 2])).Message);
        Assert.Throws<ArgumentException>(() => f.AddF32("__metadata__", [1], [1]));
        var e = Assert.Throws<ArgumentException>(() => f.AddF32("v", [2, 2], [1, 2, 3]));
        Assert.StartsWith("tensor v: F32 [2,2] needs 16 bytes, got 12", e.Message);
        Assert.Throws<ArgumentException>(() => f.Add("n", SafeDType.U8, [-1], []));
        Assert.Single(f.Tensors);
    }

    private string[] FilesInDir() => Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName).Order().ToArray()!;

    private (string Path, byte[] Old) ExistingCheckpoint()
    {
        string path = Path.Combine(_dir, "model.safetensors");
        var old = new SafeTensorsFile();
        old.AddF32("w", [3], [1, 2, 3]);
        old.WriteAtomic(path);
        return (path, File.ReadAllBytes(path));
    }

    [Fact]
    public void WriteAtomic_FailureMidWrite_KeepsPreviousFileAndRemovesTemp()
    {
        var (path, old) = ExistingCheckpoint();
        var ex = Assert.Throws<IOException>(() =>
            Sample().WriteAtomic(path, s => new FailAfterStream(s, failAfterBytes: 100)));
        Assert.Equal("simulated disk full", ex.Message);
        Assert.Equal(old, File.ReadAllBytes(path));
        Assert.Equal(["model.safetensors"], FilesInDir());
    }

    [Fact]
    public void WriteAtomic_InconsistentTensor_KeepsPreviousFileAndRemovesTemp()
    {
        var (path, old) = ExistingCheckpoint();
        var f = Sample();
        f.Get("head.bias").Shape[0] = 4; // data still holds 3 doubles
        var ex = Assert.Throws<InvalidOperationException>(() => f.WriteAtomic(path));
        Assert.Contains("tensor head.bias: F64 [4] needs 32 bytes but holds 24", ex.Message);
        Assert.Equal(old, File.ReadAllBytes(path));
        Assert.Equal(["model.safetensors"], FilesInDir());
    }

    [Fact]
    public void WriteAtomic_RenameFails_RemovesTemp()
    {
        string target = Path.Combine(_dir, "occupied");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "keep.txt"), "x");
        Assert.ThrowsAny<IOException>(() => Sample().WriteAtomic(target)); // a directory is in the way
        Assert.Equal(["occupied"], FilesInDir());
        Assert.Equal("x", File.ReadAllText(Path.Combine(target, "keep.txt")));
    }

    [Fact]
    public void WriteAtomic_ReplacesExistingFile()
    {
        var (path, old) = ExistingCheckpoint();
        Sample().WriteAtomic(path);
        Assert.NotEqual(old, File.ReadAllBytes(path));
        AssertSameContent(Sample(), SafeTensorsFile.Read(path));
        Assert.Equal(["model.safetensors"], FilesInDir());
    }

    /// <summary>Passes writes through until a byte budget is spent, then throws like a full disk.</summary>
    private sealed class FailAfterStream(Stream inner, long failAfterBytes) : Stream
    {
        private long _left = failAfterBytes;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            int n = (int)Math.Min(buffer.Length, _left);
            inner.Write(buffer[..n]);
            _left -= n;
            if (n < buffer.Length) throw new IOException("simulated disk full");
        }
    }
}
