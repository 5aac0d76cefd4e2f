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
