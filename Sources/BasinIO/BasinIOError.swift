import Foundation

/// A failure reading or writing a model, data set or recipe file. The message always names the file,
/// and the tensor when there is one, and says what is wrong.
public struct BasinIOError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong, as a category tests and callers can match on.
    public enum Kind: String, Sendable {
        case unreadable, truncatedHeaderLength, absurdHeaderLength, headerPastEnd, headerNotUTF8, badJSON
        case headerNotObject, badMetadata, malformedEntry, unknownDType, badShape, badOffsets
        case offsetsOutsideData, sizeMismatch, overlappingTensors, uncoveredBytes, missingTensor
        case badIndex, missingShard, shardMissingTensor, duplicateTensor
        case badDataset, unsupportedDType, writeFailed, wouldOverwriteInput, invalidArgument
        // ONNX files: not decodable as protobuf; decodable but not a valid graph; weights in external files;
        // valid ONNX that Basin does not read (sparse or chunked tensors); over protobuf's 2 GiB limit.
        case malformedProtobuf, badONNX, externalData, unsupportedONNX, fileTooLarge
        /// A FIFO, device, socket (or a folder where a file is meant, and the reverse): refused before opening.
        case notRegularFile
        /// Following the path's symbolic links never ends.
        case symlinkLoop
        /// Two outputs of one command are the same file.
        case outputsCollide
        /// A shard named in an index points outside the index's folder.
        case shardOutsideFolder
        /// A data set with no rows.
        case emptyDataset
        /// A write hit the file-size limit (ulimit -f, EFBIG) or the disk is full (ENOSPC).
        case noSpace
        /// Tensors to be written hold NaN or infinite values.
        case nonFiniteValues
        /// A request needs more memory than the machine has.
        case insufficientMemory
    }

    public let kind: Kind
    public let file: String
    public let tensor: String?
    public let problem: String

    public init(_ kind: Kind, file: String, tensor: String? = nil, _ problem: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.problem = problem
    }

    public var description: String {
        if let tensor { return "\(file): tensor '\(tensor)': \(problem)" }
        return "\(file): \(problem)"
    }
}

extension BasinIOError: LocalizedError {
    public var errorDescription: String? { description }
}
