using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace BnDist.Core.Checkpoints;

/// <summary>
/// The JSON header of a safetensors file, parsed and checked: the optional <c>__metadata__</c>
/// string map, and one entry per tensor with its dtype, shape and <c>data_offsets</c> (relative
/// to the start of the data buffer that follows the header), in buffer order.
/// </summary>
/// <remarks>
/// <see cref="Parse"/> enforces the spec's header rules: the header starts with <c>'{'</c> and is
/// valid UTF-8 JSON whose root is an object; names are unique; <c>__metadata__</c>, if present, is
/// an object of strings (or null); every entry is an object with a known <c>dtype</c>, a
/// <c>shape</c> of non-negative integers and a two-element <c>data_offsets</c> [begin, end] with
/// begin ≤ end ≤ buffer length and end − begin = product(shape) × dtype size; and the entries,
/// sorted by offset, tile the data buffer exactly, starting at 0 with no hole, no overlap and no
/// trailing byte. Unknown keys inside an entry are ignored, as the reference reader does.
/// <see cref="Build"/> writes the header the way the reference writer does: compact JSON,
/// <c>__metadata__</c> first (omitted when empty), entry keys in the order dtype, shape,
/// data_offsets, padded with spaces to a multiple of 8 bytes.
/// </remarks>
internal sealed class SafeTensorsHeader
{
    /// <summary>One tensor's header entry.</summary>
    internal readonly record struct Entry(string Name, SafeDType DType, long[] Shape, long Begin, long End)
    {
        public long Length => End - Begin;
    }

    private SafeTensorsHeader(Dictionary<string, string> metadata, List<Entry> entries)
    {
        Metadata = metadata;
        Entries = entries;
    }

    /// <summary>The <c>__metadata__</c> map (empty when absent or null).</summary>
    public Dictionary<string, string> Metadata { get; }

    /// <summary>Tensor entries sorted by <see cref="Entry.Begin"/>: the order their bytes appear in the file.</summary>
    public List<Entry> Entries { get; }

    /// <summary>
    /// Parses and validates <paramref name="header"/> (the N header bytes, padding included) for a
    /// data buffer of <paramref name="dataLength"/> bytes. Throws <see cref="InvalidDataException"/>
    /// whose message starts with <paramref name="file"/> and says which rule was broken.
    /// </summary>
    public static SafeTensorsHeader Parse(ReadOnlyMemory<byte> header, long dataLength, string file)
    {
        if (header.IsEmpty || header.Span[0] != (byte)'{')
            throw Bad(file, "header does not start with '{' (not a safetensors file?)");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw Bad(file, $"header is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            try
            {
                return FromJson(doc.RootElement, dataLength, file);
            }
            catch (InvalidOperationException e)
            {
                // JsonElement accessors throw this for strings that are not valid UTF-8.
                throw Bad(file, $"header is not valid UTF-8 JSON: {e.Message}", e);
            }
        }
    }

    private static SafeTensorsHeader FromJson(JsonElement root, long dataLength, string file)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw Bad(file, $"header is a JSON {root.ValueKind}, not an object");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var entries = new List<Entry>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty property in root.EnumerateObject())
        {
            if (!seen.Add(property.Name))
                throw Bad(file, $"name \"{property.Name}\" appears twice in the header");
            if (property.Name == SafeTensorsFile.MetadataKey)
                ReadMetadata(property.Value, metadata, file);
            else
                entries.Add(ReadEntry(property.Name, property.Value, dataLength, file));
        }
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        CheckTiling(entries, dataLength, file);
        return new SafeTensorsHeader(metadata, entries);
    }

    private static void ReadMetadata(JsonElement value, Dictionary<string, string> into, string file)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad(file, $"{SafeTensorsFile.MetadataKey} is a JSON {value.ValueKind}, not an object of strings");
        foreach (JsonProperty p in value.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw Bad(file, $"{SafeTensorsFile.MetadataKey} key \"{p.Name}\" is a JSON {p.Value.ValueKind}, not a string");
            if (!into.TryAdd(p.Name, p.Value.GetString()!))
                throw Bad(file, $"{SafeTensorsFile.MetadataKey} key \"{p.Name}\" appears twice");
        }
    }

    private static Entry ReadEntry(string name, JsonElement value, long dataLength, string file)
    {
        string where = $"tensor {name}";
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad(file, $"{where}: entry is a JSON {value.ValueKind}, not an object");
        JsonElement? dtypeJson = null, shapeJson = null, offsetsJson = null;
        foreach (JsonProperty p in value.EnumerateObject())
        {
            ref JsonElement? slot = ref dtypeJson;
            if (p.Name == "dtype") slot = ref dtypeJson;
            else if (p.Name == "shape") slot = ref shapeJson;
            else if (p.Name == "data_offsets") slot = ref offsetsJson;
            else continue;
            if (slot is not null) throw Bad(file, $"{where}: key \"{p.Name}\" appears twice");
            slot = p.Value;
        }
        if (dtypeJson is not { } d || shapeJson is not { } s || offsetsJson is not { } o)
            throw Bad(file, $"{where}: entry needs \"dtype\", \"shape\" and \"data_offsets\"");

        if (d.ValueKind != JsonValueKind.String || !SafeDTypeExtensions.TryParse(d.GetString(), out SafeDType dtype))
            throw Bad(file, $"{where}: unknown dtype {d.GetRawText()}");
        long[] shape = ReadIntegers(s, where, "shape", file);
        long[] offsets = ReadIntegers(o, where, "data_offsets", file);
        if (offsets.Length != 2)
            throw Bad(file, $"{where}: data_offsets has {offsets.Length} numbers, not [begin, end]");
        long begin = offsets[0], end = offsets[1];
        string span = $"data_offsets [{begin}, {end}]";
        if (begin > end)
            throw Bad(file, $"{where}: {span} end before they begin");
        long needed = SafeTensor.TryByteCount(dtype, shape)
            ?? throw Bad(file, $"{where}: shape {SafeTensor.FormatShape(shape)} has too many elements");
        if (end - begin != needed)
            throw Bad(file, $"{where}: {span} but {SafeTensor.Describe(dtype, shape)} needs {needed} bytes");
        if (end > dataLength)
            throw Bad(file, $"{where}: {span} run past the end of the {dataLength}-byte data buffer (file truncated?)");
        return new Entry(name, dtype, shape, begin, end);
    }

    private static long[] ReadIntegers(JsonElement value, string where, string key, string file)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw Bad(file, $"{where}: {key} is a JSON {value.ValueKind}, not an array");
        var result = new long[value.GetArrayLength()];
        int i = 0;
        foreach (JsonElement item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0)
                throw Bad(file, $"{where}: {key} holds {item.GetRawText()}, not a non-negative integer");
            result[i++] = v;
        }
        return result;
    }

    /// <summary>The spec requires the tensors, in offset order, to cover [0, dataLength) exactly.</summary>
    private static void CheckTiling(List<Entry> sorted, long dataLength, string file)
    {
        long covered = 0;
        string? previous = null;
        foreach (Entry e in sorted)
        {
            if (e.Begin < covered)
                throw Bad(file, $"tensor {e.Name}: data_offsets [{e.Begin}, {e.End}] overlap tensor {previous}, which ends at {covered}");
            if (e.Begin > covered)
                throw Bad(file, $"tensor {e.Name}: data_offsets [{e.Begin}, {e.End}] leave a hole: bytes [{covered}, {e.Begin}) of the data buffer belong to no tensor");
            covered = e.End;
            previous = e.Name;
        }
        if (covered != dataLength)
            throw Bad(file, $"data buffer is {dataLength} bytes but the tensors cover only [0, {covered}): a hole of {dataLength - covered} trailing bytes");
    }

    /// <summary>
    /// Builds the padded header for <paramref name="layout"/>, whose tensors are placed back to
    /// back from offset 0 in list order.
    /// </summary>
    public static byte[] Build(IReadOnlyDictionary<string, string> metadata, IReadOnlyList<SafeTensor> layout)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using (var w = new Utf8JsonWriter(buffer, options))
        {
            w.WriteStartObject();
            if (metadata.Count > 0)
            {
                w.WriteStartObject(SafeTensorsFile.MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    w.WriteString(key, value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (SafeTensor t in layout)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.ToSpecString());
                w.WriteStartArray("shape");
                foreach (long dim in t.Shape) w.WriteNumberValue(dim);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += t.Data.LongLength;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int length = buffer.WrittenCount;
        int padded = checked(length + 7) & ~7;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(length).Fill((byte)' ');
        return header;
    }

    private static InvalidDataException Bad(string file, string message, Exception? inner = null) =>
        new($"{file}: {message}", inner);
}
