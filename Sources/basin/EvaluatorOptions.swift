import ArgumentParser
import BasinFusion
import Foundation

/// `--evaluate CMD`, `--evaluate-jobs N`, `--evaluate-timeout S`: an external evaluator (issue 14 §4), the same
/// options and checks on `basin merge`, `basin soup` and `basin explore`.
struct EvaluatorOptions: ParsableArguments {
    @Option(help: "External evaluator: a command run with each candidate model's folder as its last argument, printing one JSON object of named metrics (the contract: docs/merging.md). Candidates are streamed to folders, so any model size works.")
    var evaluate: String?

    @Option(help: "With --evaluate: candidates evaluated at a time, each in its own process group (1 to 64; basin merge has one candidate).")
    var evaluateJobs: Int = 1

    @Option(help: "With --evaluate: seconds to wait for the evaluator before it (and everything it started) is stopped and the candidate fails (1 to 604800; default 3600).")
    var evaluateTimeout: Double?

    /// The most evaluators run at once.
    static let jobsRange = 1...64

    func validate() throws {
        if let evaluate, evaluate.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--evaluate needs a command") }
        try Check.range(evaluateJobs, Self.jobsRange, "--evaluate-jobs")
        if evaluate == nil && evaluateJobs != 1 { throw ValidationError("--evaluate-jobs goes with --evaluate") }
        if let evaluateTimeout {
            guard evaluate != nil else { throw ValidationError("--evaluate-timeout goes with --evaluate") }
            try Check.range(evaluateTimeout, ExternalEvaluator.timeoutRange, "--evaluate-timeout")
        }
    }

    /// The evaluator asked for (nil without --evaluate).
    var evaluator: ExternalEvaluator? {
        evaluate.map { ExternalEvaluator(command: $0, timeout: evaluateTimeout ?? ExternalEvaluator.defaultTimeout) }
    }
}

/// `--metric NAME`, `--minimize`: what a greedy soup chooses by when an external evaluator scores it (`basin soup`
/// and the explorer's soup view; the semantics of `ExternalSoup`).
struct EvaluatorMetricOptions: ParsableArguments {
    @Option(help: "With --evaluate: the metric the greedy soup chooses by (default: the only one, or the one named like an accuracy).")
    var metric: String?

    @Flag(help: "With --evaluate: smaller values of the metric are better (default: guessed from its name: loss, perplexity, error are minimised).")
    var minimize = false

    /// Checks the options go with an evaluator.
    func validate(with evaluator: EvaluatorOptions) throws {
        guard evaluator.evaluate == nil else { return }
        if metric != nil { throw ValidationError("--metric goes with --evaluate (it names one of the evaluator's metrics)") }
        if minimize { throw ValidationError("--minimize goes with --evaluate") }
    }

    /// Whether larger is better: nil lets `ExternalSoup` guess from the metric's name.
    var higherIsBetter: Bool? { minimize ? false : nil }
}
