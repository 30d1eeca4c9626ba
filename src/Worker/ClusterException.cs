namespace BnDist.Worker;

/// <summary>The run failed: the coordinator aborted it, or it could not be reached in time. The message says why.</summary>
public sealed class ClusterException(string message, Exception? inner = null) : Exception(message, inner);
