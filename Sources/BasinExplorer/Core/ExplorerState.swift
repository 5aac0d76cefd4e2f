import BasinFusion
import BasinNet
import BasinUI
import Foundation

/// The explorer's views (tabs), in tab order. Each has a module (`ExplorerViewModule`) with its keys, actions,
/// mouse handling and drawing.
package enum ExplorerView: String, Sendable, CaseIterable, Hashable {
    case path, permutation, soup, landscape, taskVectors = "task-vectors"

    package var title: String {
        switch self {
        case .path: "Path"
        case .permutation: "Permutation"
        case .soup: "Soup"
        case .landscape: "Landscape"
        case .taskVectors: "Task vectors"
        }
    }

    var module: any ExplorerViewModule.Type {
        switch self {
        case .path: PathView.self
        case .permutation: PermutationView.self
        case .soup: SoupView.self
        case .landscape: LandscapeView.self
        case .taskVectors: TaskVectorView.self
        }
    }
}

/// A background job the status bar shows.
package struct JobStatus: Sendable, Equatable {
    package var id: Int
    package var title: String
    package var fraction: Double
    package var detail: String
    package var started: Date
}

/// Pair or chain selection with several models.
package enum Selection: Hashable, Sendable {
    case pair(Int, Int)
    case chain
}

/// Everything the explorer shows. A plain value: `ExplorerApp.update` is the only place it changes.
package struct ExplorerState: Sendable {
    package var view: ExplorerView = .path
    package var modelNames: [String]
    package var dataNames: [String]
    /// The soup view's rows: the data sets, "held-out" when a held-out set was given, then the named evaluation sets.
    package var soupDataNames: [String]
    package var selection: Selection = .pair(0, 1)
    /// Focused pane in the current view (Tab cycles).
    package var pane = 0
    package var path = PathState()
    /// Alignments made with m / M: reference model -> model -> its alignment to the reference.
    package var alignments: [Int: [Int: ExplorerEngine.MatchOutcome]] = [:]
    package var jobs: [JobStatus] = []
    package var lastJobNote: String?
    package var permutation = PermutationState()
    package var soup: SoupState
    package var landscape = LandscapeState()
    package var taskVectors = TaskVectorState()
    /// The guided lesson's step (nil: no lesson).
    package var lesson: LessonState?
    package var showHelp = false
    /// First help line shown (the help scrolls).
    package var helpScroll = 0
    package var prompt: PromptState?
    package var popup: PopupState?
    package var size = Size(width: 80, height: 24)
    /// A network with BatchNorm: the data set its statistics are recomputed on (nil without BatchNorm).
    package var batchNorm: String?
    /// The lesson's tour (numbering and steps; the renderer draws from it).
    package var lessonTour: LessonTour = .session
    /// Token data (language models): loss, perplexity and token accuracy instead of loss and accuracy.
    package var tokenData = false

    package init(modelNames: [String], dataNames: [String], heldOut: Bool = false, evalNames: [String] = []) {
        self.modelNames = modelNames
        self.dataNames = dataNames
        soupDataNames = dataNames + (heldOut ? ["held-out"] : []) + evalNames
        soup = SoupState(coefficients: Array(repeating: 1 / Double(modelNames.count), count: modelNames.count))
    }

    package var selectionLabel: String {
        switch selection {
        case let .pair(a, b): "\(modelNames[a]) → \(modelNames[b])"
        case .chain: "chain " + modelNames.joined(separator: " → ")
        }
    }

    /// Every selectable pair, then the chain (with three or more models).
    package var selections: [Selection] {
        let n = modelNames.count
        var out: [Selection] = []
        for a in 0..<n { for b in (a + 1)..<n where b < n { out.append(.pair(a, b)) } }
        if n >= 3 { out.append(.chain) }
        return out
    }

    /// The selected pair (A, B); the first two models for the chain.
    package var pair: (a: Int, b: Int) {
        if case let .pair(a, b) = selection { return (a, b) }
        return (0, 1)
    }

    /// The model the others are aligned to for the current selection: A of the pair (the first model for the chain).
    package var reference: Int { pair.a }

    /// The models the selection's paths run through, in order.
    package var selectedModels: [Int] {
        if case let .pair(a, b) = selection { return [a, b] }
        return Array(modelNames.indices)
    }

    /// Model i permuted to the reference (nil when not aligned, or when i is the reference).
    package func alignment(of i: Int) -> ExplorerEngine.MatchOutcome? {
        i == reference ? nil : alignments[reference]?[i]
    }

    /// Every model of the selection other than the reference is aligned to it.
    package var selectionAligned: Bool {
        selectedModels.allSatisfy { $0 == reference || alignment(of: $0) != nil }
    }

    /// The matching method of the selection's alignments ("weight", "activation"; mixed if they differ).
    package var alignmentMethod: String? {
        let methods = Set(selectedModels.compactMap { i in
            alignment(of: i).map { ($0.strategy == .mergeMany ? "MergeMany " : "") + $0.report.method.rawValue }
        })
        return methods.count == 1 ? methods.first : (methods.isEmpty ? nil : "mixed")
    }
}

/// Messages background jobs post back to the UI.
package enum ExplorerMessage: Sendable {
    case curvePoint(CurveID, generation: Int, CurvePoint)
    case jobProgress(id: Int, fraction: Double, detail: String)
    case jobFinished(id: Int, note: String?)
    case jobFailed(id: Int, String)
    /// A fit's bend after an epoch (the curve redraws with it).
    case fitEpoch(CurveID, selection: Selection, ParameterSet, epoch: Int, epochs: Int, loss: Double)
    /// A fit ended (finished, or stopped early with the bend so far).
    case fitted(CurveID, selection: Selection, ParameterSet, note: String)
    case matched(ExplorerEngine.MatchOutcome)
    case barrierMatrix([[Double]])
    case landscapeRow(generation: Int, row: Int, [Double])
    case soupTriangle([[Double]])
    case soupCoefficients([Double], note: String)
    case taskVectors(TaskVectorAnalysis)
    case taskVectorsFailed(String)
    /// The external evaluator's metrics for the soup with this signature (or why it failed); `serial` orders the
    /// evaluations by when they started.
    case externalMetrics(serial: Int, signature: String, Result<[String: Double], ExternalFailure>)
    /// Greedy soup chosen by the external evaluator (or why it failed).
    case externalGreedy(Result<ExternalGreedyOutcome, ExternalFailure>)
}

/// An external evaluation that failed: the evaluator's message (with its standard error).
package struct ExternalFailure: Error, Sendable, Equatable {
    package var message: String
}

/// A one-line prompt (export file name).
package struct PromptState: Sendable, Equatable {
    package var prompt: String
    package var input: TextInput
    package var widget: Prompt { Prompt(prompt: prompt, input: input) }
}

/// A message box.
package struct PopupState: Sendable, Equatable {
    package var title: String
    package var message: String
    package var isError: Bool
    package init(title: String, message: String, isError: Bool = false) {
        self.title = title
        self.message = message
        self.isError = isError
    }
    package var widget: Popup { Popup(title: title, message: message, kind: isError ? .error : .info) }
}
