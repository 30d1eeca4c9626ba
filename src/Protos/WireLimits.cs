namespace BnDist.Protos;

/// <summary>Sizes both ends of the protocol agree on.</summary>
public static class WireLimits
{
    /// <summary>The version of cluster.proto's semantics; a worker of another version is refused.</summary>
    public const int ProtocolVersion = 3;

    /// <summary>gRPC message limit on both ends (an initial state or checkpoint image is a few MB).</summary>
    public const int MaxMessageBytes = 256 * 1024 * 1024;

    /// <summary>float32 payloads (gradients) travel in chunks of at most this many values (1 MiB).</summary>
    public const int FloatChunk = 256 * 1024;

    /// <summary>HTTP/2 flow-control window of both ends (per stream and per connection): several gradient chunks in flight.</summary>
    public const int Http2WindowBytes = 16 * 1024 * 1024;

    /// <summary>Checkpoint uploads travel in chunks of this many bytes.</summary>
    public const int StateChunkBytes = 1024 * 1024;
}
