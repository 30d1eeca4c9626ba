using System.Buffers;
using System.Runtime.InteropServices;
using Google.Protobuf;

namespace BnDist.Protos;

/// <summary>
/// float32 payloads as protobuf bytes without a copy: a range of a float array wrapped as a
/// <see cref="ByteString"/>. The caller promises the range is not written while the message
/// may still be serialized (a final gradient sum; a buffer not reused before its write completed).
/// </summary>
public static class FloatBytes
{
    public static ByteString Wrap(float[] values, int offset, int count) => UnsafeByteOperations.UnsafeWrap(AsMemory(values, offset, count));

    /// <summary>Values [offset, offset + count) of a float array as bytes, without a copy (for socket I/O).</summary>
    public static Memory<byte> AsMemory(float[] values, int offset, int count) =>
        new Manager(values).Memory.Slice(offset * sizeof(float), count * sizeof(float));

    private sealed class Manager(float[] values) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(values.AsSpan());

        public override unsafe MemoryHandle Pin(int elementIndex = 0)
        {
            var handle = GCHandle.Alloc(values, GCHandleType.Pinned);
            return new MemoryHandle((byte*)handle.AddrOfPinnedObject() + elementIndex, handle);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
