using System.Buffers.Binary;
using System.IO.Compression;

namespace BnDist.Core.Tests.Data;

/// <summary>A fresh directory under the system temp directory, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "bndist-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Builds small IDX files (raw bytes) for tests.</summary>
internal static class Idx
{
    public static byte[] Images(int count, int rows, int cols, Func<int, byte>? pixel = null, int? headerCount = null)
    {
        var bytes = new byte[16 + count * rows * cols];
        BinaryPrimitives.WriteInt32BigEndian(bytes, 0x803);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), headerCount ?? count);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), rows);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), cols);
        for (int i = 16; i < bytes.Length; i++)
            bytes[i] = pixel?.Invoke(i - 16) ?? (byte)(i * 7);
        return bytes;
    }

    public static byte[] Labels(params byte[] labels)
    {
        var bytes = new byte[8 + labels.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, 0x801);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), labels.Length);
        labels.CopyTo(bytes, 8);
        return bytes;
    }

    public static byte[] Gzip(byte[] raw)
    {
        using var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
            gz.Write(raw);
        return output.ToArray();
    }

    /// <summary>Writes <paramref name="raw"/> to <paramref name="path"/>, gzip'd when <paramref name="gzip"/>.</summary>
    public static string Write(string path, byte[] raw, bool gzip)
    {
        System.IO.File.WriteAllBytes(path, gzip ? Gzip(raw) : raw);
        return path;
    }
}

/// <summary>The embedded Fashion-MNIST subset as copied into the test output directory.</summary>
internal static class Embedded
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "data", "fashion-mnist");

    public static string File(string name) => Path.Combine(Directory, name);

    private static readonly Lazy<BnDist.Core.Data.Dataset> LazyTest = new(() => BnDist.Core.Data.Dataset.Load(Directory, train: false));

    /// <summary>The test split, loaded once per test run.</summary>
    public static BnDist.Core.Data.Dataset Test => LazyTest.Value;

    /// <summary>Where the Debian package dataset-fashion-mnist puts the full data set.</summary>
    public const string DebianDirectory = "/usr/share/datasets/fashion-mnist";
}
