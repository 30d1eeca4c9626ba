using System.Text;
using BnDist.Core.Checkpoints;

namespace BnDist.Core.Tests.Checkpoints;

/// <summary>Every malformed input is an InvalidDataException that names the file and the broken rule.</summary>
public sealed class SafeTensorsCorruptionTests
{
    private const string Name = "model.safetensors";

    /// <summary>A file with this exact header text (no padding) and <paramref name="dataLength"/> data bytes.</summary>
    private static byte[] Build(string headerJson, int dataLength) => Build(Encoding.UTF8.GetBytes(headerJson), dataLength);

    private static byte[] Build(byte[] header, int dataLength) =>
        [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. new byte[dataLength]];

    private static string ReadError(byte[] bytes)
    {
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Read(new MemoryStream(bytes), Name));
        Assert.StartsWith(Name + ": ", e.Message);
        return e.Message;
    }

    private static byte[] Valid()
    {
        var f = new SafeTensorsFile();
        f.AddF32("w", [4], [1, 2, 3, 4]);
        var ms = new MemoryStream();
        f.Write(ms);
        return ms.ToArray();
    }

    [Fact]
    public void SanityCheck_HandBuiltValidFileReads()
    {
        var f = SafeTensorsFile.Read(new MemoryStream(Build("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4)), Name);
        Assert.Equal([0f], f.GetF32("a", [1]));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public void TruncatedBeforeHeaderLength(int length)
    {
        Assert.Equal($"{Name}: file is {length} bytes, too short for the 8-byte header length (truncated?)", ReadError(Valid()[..length]));
    }

    [Fact]
    public void TruncatedInsideHeader()
    {
        byte[] valid = Valid();
        Assert.Contains("runs past the end of the file", ReadError(valid[..20]));
    }

    [Fact]
    public void TruncatedInsideData()
    {
        byte[] valid = Valid();
        Assert.Equal($"{Name}: tensor w: data_offsets [0, 16] run past the end of the 12-byte data buffer (file truncated?)",
                     ReadError(valid[..^4]));
    }

    [Fact]
    public void HeaderLengthBeyondFile()
    {
        byte[] bytes = Valid();
        BitConverter.GetBytes(5000UL).CopyTo(bytes, 0);
        Assert.Equal($"{Name}: header length 5000 runs past the end of the file, which has {bytes.Length - 8} bytes after the length (truncated?)",
                     ReadError(bytes));
    }

    [Theory]
    [InlineData(100_000_001UL)]
    [InlineData(ulong.MaxValue)]
    public void HeaderLengthOverLimit(ulong length)
    {
        byte[] bytes = Valid();
        BitConverter.GetBytes(length).CopyTo(bytes, 0);
        Assert.Contains($"header length {length} exceeds the 100000000-byte limit", ReadError(bytes));
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}""")]     // unclosed
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}},""")]   // trailing comma
    [InlineData("""{"a":{"dtype":F32,"shape":[1],"data_offsets":[0,4]}}""")]      // bare word
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  x""")] // junk after the object
    public void InvalidJson(string header)
    {
        Assert.StartsWith($"{Name}: header is not valid JSON", ReadError(Build(header, 4)));
    }

    [Fact]
    public void InvalidUtf8InHeader()
    {
        byte[] header = Encoding.UTF8.GetBytes("""{"a?":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""");
        header[3] = 0xFF;
        Assert.StartsWith($"{Name}: header is not valid UTF-8 JSON", ReadError(Build(header, 4)));
    }

    [Theory]
    [InlineData("""  {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""")]
    [InlineData("""[{"a":1}]""")]
    [InlineData("")]
    public void HeaderNotStartingWithBrace(string header)
    {
        Assert.Equal($"{Name}: header does not start with '{{' (not a safetensors file?)", ReadError(Build(header, 4)));
    }

    [Theory]
    [InlineData("F12", "unknown dtype \"F12\"")]
    [InlineData("f32", "unknown dtype \"f32\"")]
    [InlineData("11", "unknown dtype \"11\"")]
    public void UnknownDtype(string dtype, string problem)
    {
        string header = $$$"""{"a":{"dtype":"{{{dtype}}}","shape":[1],"data_offsets":[0,4]}}""";
        Assert.Equal($"{Name}: tensor a: {problem}", ReadError(Build(header, 4)));
    }

    [Fact]
    public void SizeShapeMismatch()
    {
        string header = """{"conv1.weight":{"dtype":"F32","shape":[32,1,3,3],"data_offsets":[0,100]}}""";
        Assert.Equal("model.safetensors: tensor conv1.weight: data_offsets [0, 100] but F32 [32,1,3,3] needs 1152 bytes",
                     ReadError(Build(header, 100)));
    }

    [Fact]
    public void OffsetsOutOfRange()
    {
        string header = """{"a":{"dtype":"F64","shape":[2],"data_offsets":[8,24]}}""";
        Assert.Equal($"{Name}: tensor a: data_offsets [8, 24] run past the end of the 16-byte data buffer (file truncated?)",
                     ReadError(Build(header, 16)));
    }

    [Fact]
    public void Overlap()
    {
        string header = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""";
        Assert.Equal($"{Name}: tensor b: data_offsets [4, 12] overlap tensor a, which ends at 8", ReadError(Build(header, 12)));
    }

    [Fact]
    public void HoleBetweenTensors()
    {
        string header = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""";
        Assert.Equal($"{Name}: tensor b: data_offsets [8, 12] leave a hole: bytes [4, 8) of the data buffer belong to no tensor",
                     ReadError(Build(header, 12)));
    }

    [Fact]
    public void HoleAtStart()
    {
        string header = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""";
        Assert.Contains("leave a hole: bytes [0, 4)", ReadError(Build(header, 8)));
    }

    [Fact]
    public void TrailingBytesNotCovered()
    {
        string header = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        Assert.Equal($"{Name}: data buffer is 8 bytes but the tensors cover only [0, 4): a hole of 4 trailing bytes",
                     ReadError(Build(header, 8)));
        Assert.Contains("a hole of 3 trailing bytes", ReadError(Build("{}", 3)));
    }

    [Fact]
    public void DuplicateNames()
    {
        string header = """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""";
        Assert.Equal($"{Name}: name \"a\" appears twice in the header", ReadError(Build(header, 2)));
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", "tensor a: shape holds -1, not a non-negative integer")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}""", "tensor a: shape holds 1.5, not a non-negative integer")]
    [InlineData("""{"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}""", "tensor a: shape is a JSON String, not an array")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", "tensor a: data_offsets has 3 numbers, not [begin, end]")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", "tensor a: data_offsets [4, 0] end before they begin")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":["0",4]}}""", "tensor a: data_offsets holds \"0\", not a non-negative integer")]
    [InlineData("""{"a":{"shape":[1],"data_offsets":[0,4]}}""", "tensor a: entry needs \"dtype\", \"shape\" and \"data_offsets\"")]
    [InlineData("""{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", "tensor a: key \"dtype\" appears twice")]
    [InlineData("""{"a":[1]}""", "tensor a: entry is a JSON Array, not an object")]
    [InlineData("""{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}""", "tensor a: shape [4294967296,4294967296] has too many elements")]
    [InlineData("""{"__metadata__":{"epoch":7}}""", "__metadata__ key \"epoch\" is a JSON Number, not a string")]
    [InlineData("""{"__metadata__":"x"}""", "__metadata__ is a JSON String, not an object of strings")]
    [InlineData("""{"__metadata__":{},"__metadata__":{}}""", "name \"__metadata__\" appears twice in the header")]
    public void MalformedEntries(string header, string problem)
    {
        Assert.Equal($"{Name}: {problem}", ReadError(Build(header, header.Contains("\"a\"") ? 4 : 0)));
    }

    [Fact]
    public void NonSeekableStream_ReadsValidAndRejectsTruncated()
    {
        var f = SafeTensorsFile.Read(new NonSeekable(Valid()), Name);
        Assert.Equal([1f, 2, 3, 4], f.GetF32("w", [4]));
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Read(new NonSeekable(Valid()[..^1]), Name));
        Assert.Contains("run past the end of the 15-byte data buffer", e.Message);
    }

    [Fact]
    public void ReadFromPath_NamesThePathInErrors()
    {
        string path = Path.Combine(Path.GetTempPath(), $"bndist-bad-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, Valid()[..^2]);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Read(path));
            Assert.StartsWith(path + ": tensor w:", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private sealed class NonSeekable(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
    }
}
