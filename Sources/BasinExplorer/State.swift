import BasinNet
import BasinUI
import BasinFusion
import Foundation

/// The explorer's views (tabs).
public enum ExplorerView: String, Sendable, CaseIterable, Hashable {
    case path, permutation, soup, landscape
    public var title: String {
        switch self {
        case .path: "Path"
        case .permutation: "Permutation"
        case .soup: "Soup"
        case .landscape: "Landscape"
        }
    }
}

/// Curves the path view can overlay.
public enum CurveID: Hashable, Sendable {
    /// The selected pair's (or chain's) path of the given kind, with fitted bends if any.
    case path(PathKind)
    /// The straight line from A to B aligned to A.
    case aligned
}

public struct CurvePoint: Sendable, Equatable {
    public var t: Double
    /// Loss / accuracy per data set.
    public var loss: [Double]
    public var accuracy: [Double]
}

public struct Curve: Sendable, Equatable {
    public var label: String
    public var points: [CurvePoint] = []
    public var expected: Int
    public var generation: Int
    public var done: Bool { points.count >= expected }

    /// Barrier on data set d: max over t of loss(t) minus the straight line between the endpoint losses.
    public func barrier(_ d: Int) -> (t: Double, height: Double, loss: Double)? {
        guard let first = points.first, let last = points.last, first.t == 0, last.t == 1, points.count >= 3 else { return nil }
        let b = PathMetrics.excessOverChord(ts: points.map(\.t), values: points.map { $0.loss[d] })
        return (t: points[b.index].t, height: b.height, loss: points[b.index].loss[d])
    }
}

/// A background job the status bar shows.
public struct JobStatus: Sendable, Equatable {
    public var id: Int
    public var title: String
    public var fraction: Double
    public var detail: String
    public var started: Date
}

/// Pair or chain selection with several models.
public enum Selection: Hashable, Sendable {
    case pair(Int, Int)
    case chain
}

public struct PermutationState: Sendable {
    public var outcome: ExplorerEngine.MatchOutcome?
    public var layer: ListState = ListState()
    public var matches: ListState = ListState()
    /// 0 = layer list, 1 = match list.
    public var focus = 0
}

public struct SoupState: Sendable {
    public var coefficients: [Double]
    public var lambda: Double = 1
    /// TIES / DARE: the fraction of each task vector kept.
    public var density: Double = ExplorerEngine.soupDensity
    public var method: ExplorerEngine.SoupMethod = .weighted
    /// Merge B aligned to A (after matching) instead of B as loaded.
    public var useAligned = false
    public var selected = 0
    public var metrics: [Metrics]?
    public var error: String?
    public var ensemble: [Metrics]?
    /// Test loss over the coefficient triangle (three models): rows = c2 from 1 to 0, cols = c1; NaN outside.
    public var triangle: [[Double]]?
    public var note: String?

    /// Sliders in order: one coefficient per model, then the base's lambda (task-vector methods), then the
    /// density (TIES, DARE).
    public var sliderCount: Int {
        coefficients.count + (method.needsBase ? 1 : 0) + (method.usesDensity ? 1 : 0)
    }
}

public struct LandscapeState: Sendable {
    /// Rows top (max y) to bottom; NaN until computed.
    public var grid: [[Double]] = []
    public var xRange: ClosedRange<Double> = 0...1
    public var yRange: ClosedRange<Double> = 0...1
    /// Plane coordinates of the three points and their labels.
    public var anchors: [(x: Double, y: Double, label: String)] = []
    /// The path drawn on the plane.
    public var path: [(x: Double, y: Double)] = []
    public var title = ""
    public var generation = 0
    public var filled = 0
    public var resolution = 21
    /// Which plane: "bend", "models" or "aligned".
    public var plane = ""
}

/// Everything the explorer shows. A plain value: `ExplorerApp.update` is the only place it changes.
public struct ExplorerState: Sendable {
    public var view: ExplorerView = .path
    public var modelNames: [String]
    public var dataNames: [String]
    public var selection: Selection = .pair(0, 1)
    public var kind: PathKind = .linear
    public var t: Double = 0.5
    public var showAccuracy = false
    /// Focused pane in the current view (Tab cycles).
    public var pane = 0
    public var curves: [CurveID: Curve] = [:]
    /// Metrics of the model at the cursor (active curve at t).
    public var cursorMetrics: [Metrics]?
    /// Fitted bends exist for these kinds (for the current selection).
    public var fitted: Set<PathKind> = []
    public var aligned = false
    /// Pairwise linear-path barriers (test loss), nil until computed; NaN on the diagonal.
    public var barrierMatrix: [[Double]]?
    public var jobs: [JobStatus] = []
    public var lastJobNote: String?
    public var permutation = PermutationState()
    public var soup: SoupState
    public var landscape = LandscapeState()
    public var showHelp = false
    public var prompt: PromptState?
    public var popup: PopupState?
    public var size = Size(width: 80, height: 24)

    public init(modelNames: [String], dataNames: [String]) {
        self.modelNames = modelNames
        self.dataNames = dataNames
        soup = SoupState(coefficients: Array(repeating: 1 / Double(modelNames.count), count: modelNames.count))
    }

    public var selectionLabel: String {
        switch selection {
        case let .pair(a, b): "\(modelNames[a]) → \(modelNames[b])"
        case .chain: "chain " + modelNames.joined(separator: " → ")
        }
    }

    /// Every selectable pair, then the chain (with three or more models).
    public var selections: [Selection] {
        let n = modelNames.count
        var out: [Selection] = []
        for a in 0..<n { for b in (a + 1)..<n where b < n { out.append(.pair(a, b)) } }
        if n >= 3 { out.append(.chain) }
        return out
    }

    public var activeCurve: Curve? { curves[.path(kind)] }
}

/// Messages background jobs post back to the UI.
public enum ExplorerMessage: Sendable {
    case curvePoint(CurveID, generation: Int, CurvePoint)
    case jobProgress(id: Int, fraction: Double, detail: String)
    case jobFinished(id: Int, note: String?)
    case jobFailed(id: Int, String)
    case fitted(PathKind, selection: Selection, ParameterSetBox)
    case matched(ExplorerEngine.MatchOutcome)
    case barrierMatrix([[Double]])
    case landscapeRow(generation: Int, row: Int, [Double])
    case soupTriangle([[Double]])
    case soupCoefficients([Double], note: String)
}

/// A parameter set carried in a message.
public struct ParameterSetBox: Sendable {
    public var params: ParameterSet
    public init(_ p: ParameterSet) { params = p }
}

/// A one-line prompt (export file name).
public struct PromptState: Sendable, Equatable {
    public var prompt: String
    public var input: TextInput
    public var widget: Prompt { Prompt(prompt: prompt, input: input) }
}

/// A message box.
public struct PopupState: Sendable, Equatable {
    public var title: String
    public var message: String
    public var isError: Bool
    public init(title: String, message: String, isError: Bool = false) {
        self.title = title
        self.message = message
        self.isError = isError
    }
    public var widget: Popup { Popup(title: title, message: message, kind: isError ? .error : .info) }
}
