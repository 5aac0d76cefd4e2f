import BasinFusion
import BasinUI
import Foundation

// The guided lesson (`basin lesson`, and L in the explorer): a short narrated tour, one step per screen, each
// a sentence or two of explanation and the key to press. The explorer's keys keep working under it; Enter or →
// goes on, ← goes back, L closes the lesson, q quits.

/// One step of the lesson.
struct LessonStep: Sendable {
    var title: String
    var text: String
    /// The key the step asks for (nil: just read and go on), and how it is shown.
    var key: Key?
    var keyLabel: String
    /// Puts the explorer where the step starts (view, selection).
    var setup: @Sendable (inout ExplorerApp) -> [Effect<ExplorerMessage>]
}

/// Which tour the lesson takes.
package enum LessonTour: Sendable, Equatable {
    /// The tour for the session's network: the MLP tour, or on a network with BatchNorm the CNN tour (`L` in any
    /// session, `basin lesson --cnn`).
    case session
    /// `basin lesson` (when SampleModels/cnn is there): the MLP tour, whose last step goes on with the CNN samples:
    /// Enter there quits the session with `continueOnCNN` set and `basin lesson` opens the CNN part.
    case continuingOnCNN
    /// The CNN part of that one tour, numbered after the MLP part.
    case cnnPart
}

package struct LessonState: Sendable, Equatable {
    package var step = 0
    /// The current step's key has been pressed.
    package var done = false
}

enum Lesson {
    static func view(_ v: ExplorerView) -> @Sendable (inout ExplorerApp) -> [Effect<ExplorerMessage>] {
        { app in app.state.view == v ? [] : app.switchView(v) }
    }

    /// The steps of a tour, the number of steps before them (the CNN part of `basin lesson` continues the MLP
    /// part's numbering) and the whole tour's count.
    struct Plan {
        var steps: [LessonStep]
        var offset = 0
        var total: Int
    }

    /// The tour over the sample seeds (any two or more models of one architecture work; the text speaks of the
    /// first two as A and B). On a network with BatchNorm (the CNN samples: `basin lesson --cnn`) it gains the
    /// BN-reset step after alignment. `basin lesson` takes the MLP tour and then, with the CNN samples, goes on to
    /// them for the BatchNorm steps: one tour in two sessions.
    static func plan(batchNorm: Bool, tour: LessonTour) -> Plan {
        let whole = mlpPart.count + cnnPart.count
        switch tour {
        case .session:
            let steps = batchNorm ? cnnSteps : mlpSteps
            return Plan(steps: steps, total: steps.count)
        case .continuingOnCNN: return Plan(steps: mlpPart, total: whole)
        case .cnnPart: return Plan(steps: cnnPart, offset: mlpPart.count, total: whole)
        }
    }

    static let start = LessonStep(title: "Two networks, one task",
                   text: "A and B are the same MLP trained on the same digits from different random seeds. Both reach about 94% test accuracy. The plot shows the loss along the straight line between their weights.",
                   key: nil, keyLabel: "", setup: { app in
                       var fx = view(.path)(&app)
                       if app.state.selection != .pair(0, 1) {
                           app.state.selection = .pair(0, 1)
                           fx += app.restartCurves()
                       }
                       app.selectCurve(.linear)
                       return fx
                   })

    static let mlpSteps: [LessonStep] = [start] + middle(alignedKey: "2") + [
        LessonStep(title: "That's the tour",
                   text: "Barriers between seeds come largely from permutations; aligned models share a basin and can be averaged; fitted curves join them anyway. BatchNorm networks add one more step (resetting BN statistics along the path): basin lesson goes on to the CNN samples for it (basin lesson --cnn: the whole tour on them). Press L to close the lesson, ? for every key.",
                   key: nil, keyLabel: "", setup: { _ in [] }),
    ]

    /// `basin lesson`'s MLP part: the MLP tour up to the landscape, then the step that goes on to the CNNs.
    static let mlpPart: [LessonStep] = [start] + middle(alignedKey: "2") + [
        LessonStep(title: "BatchNorm: on to two CNNs",
                   text: "These MLPs have no BatchNorm. Most CNNs do, and averaging them adds one more cause of barriers: BatchNorm statistics that no longer fit the averaged weights. Press Enter: the tour goes on with two seeds of a small CNN with BatchNorm (SampleModels/cnn).",
                   key: nil, keyLabel: "", setup: { _ in [] }),
    ]

    /// `basin lesson`'s CNN part: the CNN pair, alignment of channels, the BatchNorm reset, a soup of CNNs.
    static let cnnPart: [LessonStep] = [
        LessonStep(title: "Two CNNs with BatchNorm",
                   text: "A and B are now two seeds of a small CNN with BatchNorm, trained on the same digits. The straight line between them (1) comes with two BatchNorm corrections (2, 3: see the side panel); its barrier is far higher than the MLPs'.",
                   key: nil, keyLabel: "", setup: { app in
                       let fx = view(.path)(&app)
                       app.selectCurve(.linear)
                       return fx
                   }),
        LessonStep(title: "Permutations of channels",
                   text: "A CNN's permutations reorder channels: a conv's output channels, with its BatchNorm and the next conv's inputs. Weight matching finds B's order of channels over the groups the graph defines. Press m.",
                   key: .char("m"), keyLabel: "m", setup: view(.permutation)),
        middle(alignedKey: "4")[2],
        batchNormStep,
        LessonStep(title: "A soup of two CNNs",
                   text: "Press a to average A with B aligned to A, then b to recompute the merged model's BatchNorm statistics (b again: REPAIR). Aligned and reset, the average of two CNNs comes close to either; as trained and naive it is little better than chance.",
                   key: .char("b"), keyLabel: "a then b", setup: view(.soup)),
        LessonStep(title: "That's the tour",
                   text: "Barriers between seeds come largely from permutations and, with BatchNorm, from statistics that no longer fit the averaged weights; aligned models with their statistics reset share a basin. b switches BN modes in the path, soup and landscape views. Press L to close the lesson, ? for every key.",
                   key: nil, keyLabel: "", setup: { _ in [] }),
    ]

    static let batchNormStep = LessonStep(title: "BatchNorm: reset the statistics",
                                          text: "Averaging two networks also averages each BatchNorm's running mean and variance, which then no longer match the activations of the averaged weights: part of the barrier is that mismatch. Press b: the same curve with every BatchNorm's statistics recomputed on the train set (press b again for REPAIR, which renormalises every channel). Matching plus reset is what makes CNNs averageable.",
                                          key: .char("b"), keyLabel: "b", setup: view(.path))

    static let cnnSteps: [LessonStep] = {
        var steps = [start] + middle(alignedKey: "4")
        steps[0].text = "A and B are the same small CNN with BatchNorm, trained on the same digits from different random seeds. The plot shows the loss along the straight line between their weights (1), and the same line with two BatchNorm corrections (2, 3: see the side panel)."
        steps.insert(batchNormStep, at: 4)
        steps.append(LessonStep(title: "That's the tour",
                                text: "Barriers between seeds come largely from permutations and, with BatchNorm, from statistics that no longer fit the averaged weights; aligned models with their statistics reset share a basin. b switches BN modes in the path and soup views. Press L to close the lesson, ? for every key.",
                                key: nil, keyLabel: "", setup: { _ in [] }))
        return steps
    }()

    /// The steps between the first and the last; `alignedKey` selects the aligned line in the curve list.
    static func middle(alignedKey: String) -> [LessonStep] {
        [
        LessonStep(title: "The barrier",
                   text: "Halfway between two good models the loss rises far above both: ◆ marks the barrier (how far the path rises above the line joining its ends). Scrub along the path with ← → after the lesson; here press End to see model B itself.",
                   key: .end, keyLabel: "End", setup: view(.path)),
        LessonStep(title: "Why: permutations",
                   text: "Reordering a layer's hidden units (and the next layer's inputs with them) gives the same function at another place in weight space. B may simply number its units differently from A. Weight matching finds the order of B's units that best fits A's. Press m.",
                   key: .char("m"), keyLabel: "m", setup: view(.permutation)),
        LessonStep(title: "Align and watch the barrier vanish",
                   text: "The aligned curve is the straight line from A to B permuted to A: the same function as B, in A's basin. Press \(alignedKey) to select it (its barrier is in the legend) and compare it with the straight line (1).",
                   key: .char(Character(alignedKey)), keyLabel: alignedKey, setup: view(.path)),
        LessonStep(title: "A curve without alignment",
                   text: "Even without permuting, A and B are joined by a low-loss curve: fit a quadratic Bezier curve whose bend is trained so the loss stays low along all of it (Garipov et al. 2018). Press 1 to select the straight line, then f, and watch it bend.",
                   key: .char("f"), keyLabel: "1 then f", setup: view(.path)),
        LessonStep(title: "A soup of aligned models",
                   text: "A soup averages weights. Averaging A and B as they are lands on the barrier; averaging A and B aligned to A gives a model as good as either. Press a to use the aligned models and watch the merged metrics.",
                   key: .char("a"), keyLabel: "a", setup: view(.soup)),
        LessonStep(title: "The landscape",
                   text: "The test loss over the plane through A, the fitted bend θ and B: the dark valley the curve follows is the low-loss path between the two basins. Press o to see other planes (aligned B, random filter-normalised directions).",
                   key: .char("o"), keyLabel: "o", setup: { app in
                       let fx = view(.landscape)(&app)
                       return fx + (app.state.landscape.grid.isEmpty ? app.startLandscape() : [])
                   }),
        ]
    }
}

extension ExplorerApp {
    /// Starts the lesson at its first step (or closes it).
    mutating func toggleLesson() -> [Effect<ExplorerMessage>] {
        if state.lesson != nil {
            state.lesson = nil
            return []
        }
        state.showHelp = false
        return goToLessonStep(0)
    }

    /// The lesson of this session (with the BN-reset step on a network with BatchNorm; `basin lesson`'s parts).
    var lessonSteps: [LessonStep] { Lesson.plan(batchNorm: state.batchNorm != nil, tour: state.lessonTour).steps }

    mutating func goToLessonStep(_ i: Int) -> [Effect<ExplorerMessage>] {
        let step = max(0, min(lessonSteps.count - 1, i))
        state.lesson = LessonState(step: step, done: false)
        return lessonSteps[step].setup(&self)
    }

    /// Keys while the lesson is open: Enter or → goes on, ← goes back, the rest reach the explorer (the
    /// step's key marks it done). Returns nil when the key is not the lesson's.
    mutating func lessonKey(_ key: Key) -> [Effect<ExplorerMessage>]? {
        guard let lesson = state.lesson else { return nil }
        switch key {
        case .enter, .right:
            if lesson.step + 1 >= lessonSteps.count {
                if state.lessonTour == .continuingOnCNN {
                    // On to the CNN samples: `basin lesson` opens them once this session has quit.
                    continueOnCNN = true
                    return perform(.quit)
                }
                state.lesson = nil
                state.lastJobNote = "lesson finished: L starts it again"
                return []
            }
            return goToLessonStep(lesson.step + 1)
        case .left:
            return goToLessonStep(lesson.step - 1)
        default:
            if let k = lessonSteps[lesson.step].key, k == key { state.lesson?.done = true }
            return nil
        }
    }
}

enum LessonRenderer {
    /// The lesson's box height at a body of this size.
    static func height(_ body: Rect) -> Int { min(9, max(6, body.height / 3)) }

    /// Draws the current step in a box along the bottom of the body.
    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, body: Rect, context: RenderContext) {
        guard let lesson = state.lesson else { return }
        let plan = Lesson.plan(batchNorm: state.batchNorm != nil, tour: state.lessonTour)
        let steps = plan.steps
        let step = steps[lesson.step]
        let h = height(body)
        let area = Rect(x: body.x, y: body.maxY - h, width: body.width, height: h)
        buffer.fill(area)
        let b = Block(title: "Lesson \(plan.offset + lesson.step + 1)/\(plan.total) · \(step.title)", borderStyle: Style(fg: .role(.accent)))
        b.render(into: &buffer, area: area, context: context)
        let inner = b.inner(area).inset(left: 1, right: 1)
        let lines = Paragraph.wrap(step.text, width: inner.width)
        for (i, l) in lines.prefix(max(0, inner.height - 1)).enumerated() {
            buffer.writeFitted(l, in: inner.row(i), style: Style(fg: .role(.foreground)), glyphs: context.glyphs)
        }
        var hint = lesson.step + 1 < steps.count ? "Enter or → next" : state.lessonTour == .continuingOnCNN ? "Enter: on to the CNNs" : "Enter ends the lesson"
        if lesson.step > 0 { hint += " · ← back" }
        hint += " · L close · q quit"
        let keyPart = step.key == nil ? "" : (lesson.done ? "✓ \(step.keyLabel) pressed   " : "press \(step.keyLabel)   ")
        let last = inner.row(inner.height - 1)
        let x = buffer.write(keyPart, x: last.x, y: last.y, style: Style(fg: .role(lesson.done ? .good : .warning), attributes: .bold), clip: last)
        buffer.writeFitted(hint, in: Rect(x: x, y: last.y, width: max(0, last.maxX - x), height: 1), style: Style(fg: .role(.muted)), glyphs: context.glyphs)
    }
}
