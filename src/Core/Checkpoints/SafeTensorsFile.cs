using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BnDist.Core.Checkpoints;

/// <summary>
/// A safetensors file held in memory: the <c>__metadata__</c> string map and the tensors, each
/// with its name, dtype, shape and raw little-endian bytes, in insertion order (after
/// <see cref="Read(Stream, string)"/>: the order of their bytes in the file). This is the
/// checkpoint format PyTorch users open with <c>safetensors.torch.load_file</c>.
/// </summary>
/// <remarks>
/// <para>Layout on disk: 8-byte little-endian header length N; N bytes of UTF-8 JSON mapping each
/// tensor name to <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> plus the optional
/// <c>"__metadata__"</c> object; then the data buffer, in which the offsets are relative.</para>
/// <para>Reading enforces every rule of the spec (see <see cref="SafeTensorsHeader"/>): header
/// length at most <see cref="MaxHeaderBytes"/> and within the file, header starting with
/// <c>'{'</c> and valid JSON, known dtypes, byte ranges matching shape × dtype size, within the
/// buffer, unique names, and ranges tiling the buffer with no hole or overlap. Any violation is an
/// <see cref="InvalidDataException"/> whose message starts with the file's name and says what was
/// wrong.</para>
/// <para>Writing is deterministic: the header is padded with spaces to a multiple of 8 bytes (as
/// the reference writer does), metadata keys are sorted, and tensors are laid out back to back
/// sorted by element size descending, then by name (ordinal) — the reference writer's order.
/// Because the data buffer starts 8-aligned and every 8-byte tensor precedes every 4-byte one and
/// so on, each tensor's bytes start at a file offset that is a multiple of its element size, so a
/// memory-mapping reader can view them in place.</para>
/// </remarks>
public sealed class SafeTensorsFile
{
    /// <summary>The reserved header key of the metadata object.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>Largest header accepted on read or produced on write (the reference limit, 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly List<SafeTensor> _tensors = [];
    private readonly Dictionary<string, SafeTensor> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>Name of the file this was read from (as given to Read), or null if built in memory; prefixes error messages.</summary>
    public string? SourceName { get; private set; }

    /// <summary>The <c>__metadata__</c> map: free-form strings (e.g. <c>format=pt</c>, epoch, step).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _metadata;

    /// <summary>The tensors in insertion order (file order after a read).</summary>
    public IReadOnlyList<SafeTensor> Tensors => _tensors;

    /// <summary>Sets (or replaces) one metadata entry.</summary>
    public void SetMetadata(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        _metadata[key] = value;
    }

    /// <summary>Adds a tensor; throws <see cref="ArgumentException"/> if its name is already present.</summary>
    public SafeTensor Add(SafeTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_byName.TryAdd(tensor.Name, tensor))
            throw new ArgumentException($"tensor {tensor.Name} is already in this file", nameof(tensor));
        _tensors.Add(tensor);
        return tensor;
    }

    /// <summary>Adds a tensor from raw little-endian bytes (taken, not copied).</summary>
    public SafeTensor Add(string name, SafeDType dtype, ReadOnlySpan<long> shape, byte[] data) =>
        Add(new SafeTensor(name, dtype, shape, data));

    /// <summary>Adds an F32 tensor, copying <paramref name="values"/> (row-major).</summary>
    public SafeTensor AddF32(string name, ReadOnlySpan<long> shape, ReadOnlySpan<float> values) =>
        Add(name, SafeDType.F32, shape, ToLittleEndian(values));

    /// <summary>Adds an F64 tensor, copying <paramref name="values"/> (row-major).</summary>
    public SafeTensor AddF64(string name, ReadOnlySpan<long> shape, ReadOnlySpan<double> values) =>
        Add(name, SafeDType.F64, shape, ToLittleEndian(values));

    /// <summary>Adds an I64 tensor (PyTorch's dtype for counters such as <c>num_batches_tracked</c>).</summary>
    public SafeTensor AddI64(string name, ReadOnlySpan<long> shape, ReadOnlySpan<long> values) =>
        Add(name, SafeDType.I64, shape, ToLittleEndian(values));

    /// <summary>Adds an I32 tensor, copying <paramref name="values"/> (row-major).</summary>
    public SafeTensor AddI32(string name, ReadOnlySpan<long> shape, ReadOnlySpan<int> values) =>
        Add(name, SafeDType.I32, shape, ToLittleEndian(values));

    /// <summary>Whether a tensor of this name is present.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Looks a tensor up by name.</summary>
    public bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SafeTensor? tensor) =>
        _byName.TryGetValue(name, out tensor);

    /// <summary>The tensor of this name; <see cref="KeyNotFoundException"/> naming it if absent.</summary>
    public SafeTensor Get(string name) =>
        _byName.TryGetValue(name, out SafeTensor? t) ? t : throw new KeyNotFoundException($"{Prefix}{name}: no such tensor");

    /// <summary>
    /// The values of an F32 tensor that must have exactly <paramref name="expectedShape"/>; throws
    /// <see cref="InvalidDataException"/> naming the tensor when it is missing or its dtype or shape
    /// differ ("bn1.running_var: expected F32 [32], file has F32 [64]").
    /// </summary>
    public float[] GetF32(string name, ReadOnlySpan<long> expectedShape) =>
        FromLittleEndian<float>(Expect(name, SafeDType.F32, expectedShape));

    /// <summary>As <see cref="GetF32"/>, for an F64 tensor.</summary>
    public double[] GetF64(string name, ReadOnlySpan<long> expectedShape) =>
        FromLittleEndian<double>(Expect(name, SafeDType.F64, expectedShape));

    /// <summary>As <see cref="GetF32"/>, for an I64 tensor.</summary>
    public long[] GetI64(string name, ReadOnlySpan<long> expectedShape) =>
        FromLittleEndian<long>(Expect(name, SafeDType.I64, expectedShape));

    /// <summary>As <see cref="GetF32"/>, for an I32 tensor.</summary>
    public int[] GetI32(string name, ReadOnlySpan<long> expectedShape) =>
        FromLittleEndian<int>(Expect(name, SafeDType.I32, expectedShape));

    private string Prefix => SourceName is null ? "" : SourceName + ": ";

    /// <summary>The tensor of this name, which must have this dtype and shape; <see cref="InvalidDataException"/> naming it otherwise.</summary>
    public SafeTensor Get(string name, SafeDType dtype, ReadOnlySpan<long> shape) => Expect(name, dtype, shape);

    private SafeTensor Expect(string name, SafeDType dtype, ReadOnlySpan<long> shape)
    {
        string expected = SafeTensor.Describe(dtype, shape);
        if (!_byName.TryGetValue(name, out SafeTensor? t))
            throw new InvalidDataException($"{Prefix}{name}: expected {expected}, file has no such tensor");
        if (!t.Matches(dtype, shape))
            throw new InvalidDataException($"{Prefix}{name}: expected {expected}, file has {SafeTensor.Describe(t.DType, t.Shape)}");
        return t;
    }

    /// <summary>Reads and validates the file at <paramref name="path"/>; errors name it as given.</summary>
    public static SafeTensorsFile Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        return Read(stream, path);
    }

    /// <summary>
    /// Reads and validates a safetensors file from the stream's current position to its end.
    /// Every format violation is an <see cref="InvalidDataException"/> whose message starts with
    /// <paramref name="nameForErrors"/>. A non-seekable stream is first copied into memory.
    /// </summary>
    public static SafeTensorsFile Read(Stream stream, string nameForErrors)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(nameForErrors);
        if (!stream.CanSeek)
        {
            var copy = new MemoryStream();
            stream.CopyTo(copy);
            copy.Position = 0;
            stream = copy;
        }
        string file = nameForErrors;
        long available = stream.Length - stream.Position;
        if (available < 8)
            throw new InvalidDataException($"{file}: file is {available} bytes, too short for the 8-byte header length (truncated?)");
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes)
            throw new InvalidDataException($"{file}: header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit (corrupt or not a safetensors file)");
        if ((long)headerLength > available - 8)
            throw new InvalidDataException($"{file}: header length {headerLength} runs past the end of the file, which has {available - 8} bytes after the length (truncated?)");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        long dataLength = available - 8 - (long)headerLength;
        SafeTensorsHeader header = SafeTensorsHeader.Parse(headerBytes, dataLength, file);

        var result = new SafeTensorsFile { SourceName = file };
        foreach (var (key, value) in header.Metadata) result._metadata.Add(key, value);
        foreach (SafeTensorsHeader.Entry e in header.Entries)
        {
            if (e.Length > Array.MaxLength)
                throw new InvalidDataException($"{file}: tensor {e.Name}: {e.Length} bytes is too large to load into one array");
            var data = new byte[e.Length];
            try
            {
                stream.ReadExactly(data); // entries tile the buffer in order, so reads are sequential
            }
            catch (EndOfStreamException ex)
            {
                throw new InvalidDataException($"{file}: tensor {e.Name}: file ended inside its data (truncated while reading?)", ex);
            }
            result.Add(new SafeTensor(e.Name, e.DType, e.Shape, data));
        }
        return result;
    }

    /// <summary>
    /// Writes the file to <paramref name="stream"/> (see the class remarks for the layout). All
    /// checks happen before the first byte is written: a tensor whose <see cref="SafeTensor.Shape"/>
    /// no longer matches its data, or a header over <see cref="MaxHeaderBytes"/>, is an
    /// <see cref="InvalidOperationException"/>.
    /// </summary>
    public void Write(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        List<SafeTensor> layout = Layout();
        byte[] header = SafeTensorsHeader.Build(_metadata, layout);
        if (header.Length > MaxHeaderBytes)
            throw new InvalidOperationException($"{Prefix}header would be {header.Length} bytes, over the {MaxHeaderBytes}-byte limit readers enforce");
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        foreach (SafeTensor t in layout) stream.Write(t.Data);
    }

    /// <summary>
    /// Writes the file so that <paramref name="path"/> holds either its previous content or the
    /// complete new file, never a partial one: the bytes go to a temporary file in the same
    /// directory, which is flushed to disk (fsync) and then renamed over <paramref name="path"/>.
    /// On any failure the temporary file is deleted and the exception rethrown.
    /// </summary>
    /// <remarks>The rename is atomic; making the rename itself durable would also need an fsync of
    /// the directory, which .NET does not expose, so after a power cut the old file may reappear.</remarks>
    public void WriteAtomic(string path) => WriteAtomic(path, wrapForTests: null);

    /// <summary>Test seam: <paramref name="wrapForTests"/> wraps the temporary file's stream (e.g. to fail mid-write).</summary>
    internal void WriteAtomic(string path, Func<Stream, Stream>? wrapForTests)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full) ?? throw new ArgumentException($"{path} has no directory", nameof(path));
        string temp = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Write(wrapForTests is null ? fs : wrapForTests(fs));
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); }
            catch (IOException) { /* keep the original exception */ }
            catch (UnauthorizedAccessException) { /* likewise */ }
            throw;
        }
    }

    /// <summary>Tensors in write order (element size descending, then name), each re-checked.</summary>
    private List<SafeTensor> Layout()
    {
        foreach (SafeTensor t in _tensors)
        {
            long? needed = SafeTensor.TryByteCount(t.DType, t.Shape);
            if (needed != t.Data.LongLength)
                throw new InvalidOperationException(
                    $"{Prefix}tensor {t.Name}: {SafeTensor.Describe(t.DType, t.Shape)} needs {needed?.ToString() ?? "an invalid number of"} bytes but holds {t.Data.LongLength} (was Shape modified?)");
        }
        return _tensors
            .OrderByDescending(t => t.DType.SizeInBytes())
            .ThenBy(t => t.Name, StringComparer.Ordinal)
            .ToList();
    }

    private static byte[] ToLittleEndian<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        byte[] bytes = MemoryMarshal.AsBytes(values).ToArray();
        if (!BitConverter.IsLittleEndian) ReverseEach(bytes, Unsafe.SizeOf<T>());
        return bytes;
    }

    private static T[] FromLittleEndian<T>(SafeTensor t) where T : unmanaged
    {
        var values = new T[t.Data.Length / Unsafe.SizeOf<T>()];
        Span<byte> bytes = MemoryMarshal.AsBytes(values.AsSpan());
        t.Data.CopyTo(bytes);
        if (!BitConverter.IsLittleEndian) ReverseEach(bytes, Unsafe.SizeOf<T>());
        return values;
    }

    /// <summary>Little-endian ⇄ big-endian for elements of <paramref name="size"/> bytes (integers and IEEE floats alike).</summary>
    private static void ReverseEach(Span<byte> bytes, int size)
    {
        for (int i = 0; i + size <= bytes.Length; i += size) bytes.Slice(i, size).Reverse();
    }
}
