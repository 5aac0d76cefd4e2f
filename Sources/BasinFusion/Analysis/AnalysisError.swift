import Foundation

/// A loss landscape, soup simplex or barrier matrix that cannot be computed, with the reason.
public struct AnalysisError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    /// What went wrong, as a category tests and callers can match on.
    public enum Kind: String, Sendable {
        /// Two of the points a plane should pass through are the same.
        case coincidentPoints
        /// The three points lie on one line: no single plane passes through them.
        case collinearPoints
        /// A grid resolution, point count or model count out of range.
        case invalidArgument
    }

    public let kind: Kind
    public let problem: String

    public init(_ kind: Kind, _ problem: String) {
        self.kind = kind
        self.problem = problem
    }

    public var description: String { problem }
    public var errorDescription: String? { problem }
}
