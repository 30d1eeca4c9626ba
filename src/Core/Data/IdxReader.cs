using System.Buffers.Binary;
using System.IO.Compression;

namespace BnDist.Core.Data;

/// <summary>
/// Images read from an IDX file: <see cref="Count"/> images of <see cref="Rows"/>×<see cref="Cols"/>
/// unsigned bytes, stored contiguously image after image, row-major, in <see cref="Pixels"/>
/// (length Count·Rows·Cols).
/// </summary>
public sealed class IdxImages
{
    internal IdxImages(int count, int rows, int cols, byte[] pixels)
    {
        Count = count;
        Rows = rows;
        Cols = cols;
        Pixels = pixels;
    }

    /// <summary>Number of images.</summary>
    public int Count { get; }

    /// <summary>Image height.</summary>
    public int Rows { get; }

    /// <summary>Image width.</summary>
    public int Cols { get; }

    /// <summary>The raw pixels, [Count, Rows, Cols] row-major, 0 = background.</summary>
    public byte[] Pixels { get; }
}

/// <summary>
/// Reads the IDX files of MNIST / Fashion-MNIST (<see href="http://yann.lecun.com/exdb/mnist/"/>):
/// images (magic 0x00000803: unsigned bytes, 3 dimensions) and labels (magic 0x00000801:
/// unsigned bytes, 1 dimension), all integers big-endian. A file may be raw or gzip-compressed;
/// compression is detected by the gzip magic bytes 1f 8b, not by the file name.
/// </summary>
/// <remarks>
/// Validation is strict: the magic, dimensions and the exact payload length are checked, so a
/// truncated file, trailing bytes after the payload, or a corrupt gzip stream each give an
/// <see cref="InvalidDataException"/> whose message starts with the file path and says what was
/// wrong. A missing file gives the usual <see cref="FileNotFoundException"/>.
/// </remarks>
public static class IdxReader
{
    /// <summary>Magic of an IDX file of unsigned bytes with 3 dimensions (images).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>Magic of an IDX file of unsigned bytes with 1 dimension (labels).</summary>
    public const int LabelsMagic = 0x00000801;

    /// <summary>Reads an images file (magic 0x00000803): [count, rows, cols] unsigned bytes.</summary>
    /// <exception cref="InvalidDataException">The file is not a valid IDX images file.</exception>
    public static IdxImages ReadImages(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var stream = Open(path);
        var header = ReadHeader(stream, path, ImagesMagic, "images");
        int count = header[0], rows = header[1], cols = header[2];
        if (rows == 0 || cols == 0)
            throw Error(path, $"bad dimensions: header says {count} images of {rows}×{cols}");
        long length = (long)count * rows * cols;
        if (length > Array.MaxLength)
            throw Error(path, $"too large: header says {count} images of {rows}×{cols} = {length} bytes");
        var pixels = ReadPayload(stream, path, (int)length,
            $"header says {count} images of {rows}×{cols} = {length} bytes");
        return new IdxImages(count, rows, cols, pixels);
    }

    /// <summary>Reads a labels file (magic 0x00000801): [count] unsigned bytes.</summary>
    /// <exception cref="InvalidDataException">The file is not a valid IDX labels file.</exception>
    public static byte[] ReadLabels(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var stream = Open(path);
        var header = ReadHeader(stream, path, LabelsMagic, "labels");
        int count = header[0];
        return ReadPayload(stream, path, count, $"header says {count} labels = {count} bytes");
    }

    /// <summary>
    /// Opens <paramref name="path"/> for reading, wrapped in a <see cref="GZipStream"/> when the
    /// file starts with the gzip magic 1f 8b.
    /// </summary>
    private static Stream Open(string path)
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read,
            bufferSize: 1 << 16, FileOptions.SequentialScan);
        try
        {
            Span<byte> magic = stackalloc byte[2];
            int n = file.ReadAtLeast(magic, 2, throwOnEndOfStream: false);
            file.Position = 0;
            if (n == 2 && magic[0] == 0x1f && magic[1] == 0x8b)
                return new GZipStream(file, CompressionMode.Decompress, leaveOpen: false);
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads and checks the magic and the dimension sizes; returns the sizes (as many as the
    /// magic's low byte says).
    /// </summary>
    private static int[] ReadHeader(Stream stream, string path, int expectedMagic, string what)
    {
        int dims = expectedMagic & 0xff;
        int headerLength = 4 * (1 + dims);
        Span<byte> header = stackalloc byte[headerLength];
        int n = Fill(stream, path, header);
        if (n < 4)
            throw Error(path, $"truncated header: an IDX {what} file needs a {headerLength}-byte header, found {n} bytes");

        int magic = BinaryPrimitives.ReadInt32BigEndian(header);
        if (magic != expectedMagic)
        {
            string hint = magic switch
            {
                ImagesMagic => " (an images file)",
                LabelsMagic => " (a labels file)",
                _ when (magic & unchecked((int)0xffff0000)) != 0 => " (not an IDX file)",
                _ => "",
            };
            throw Error(path, $"bad magic 0x{magic:x8}{hint}, expected 0x{expectedMagic:x8} " +
                              $"(IDX {what}: unsigned bytes, {dims} dimension{(dims == 1 ? "" : "s")})");
        }
        if (n < headerLength)
            throw Error(path, $"truncated header: an IDX {what} file needs a {headerLength}-byte header, found {n} bytes");

        var sizes = new int[dims];
        for (int d = 0; d < dims; d++)
        {
            uint size = BinaryPrimitives.ReadUInt32BigEndian(header[(4 + 4 * d)..]);
            if (size > int.MaxValue)
                throw Error(path, $"bad header: dimension {d} has size {size}");
            sizes[d] = (int)size;
        }
        return sizes;
    }

    /// <summary>Reads exactly <paramref name="length"/> bytes and checks that nothing follows.</summary>
    private static byte[] ReadPayload(Stream stream, string path, int length, string expectation)
    {
        var payload = GC.AllocateUninitializedArray<byte>(length);
        int n = Fill(stream, path, payload);
        if (n < length)
            throw Error(path, $"truncated: {expectation}, found {n}");

        Span<byte> scratch = stackalloc byte[4096];
        long trailing = 0;
        int read;
        while ((read = ReadChunk(stream, path, scratch)) > 0)
            trailing += read;
        if (trailing > 0)
            throw Error(path, $"{trailing} trailing byte{(trailing == 1 ? "" : "s")} after the payload: {expectation}");
        return payload;
    }

    /// <summary>Reads until <paramref name="buffer"/> is full or the stream ends; returns the count read.</summary>
    private static int Fill(Stream stream, string path, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = ReadChunk(stream, path, buffer[total..]);
            if (n == 0)
                break;
            total += n;
        }
        return total;
    }

    /// <summary>One <see cref="Stream.Read(Span{byte})"/>, with decompression errors reported against the file.</summary>
    private static int ReadChunk(Stream stream, string path, Span<byte> buffer)
    {
        try
        {
            return stream.Read(buffer);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: corrupt gzip stream: {e.Message}", e);
        }
    }

    private static InvalidDataException Error(string path, string message) => new($"{path}: {message}");
}
