import Foundation
import Soma
import Testing

struct EmotionAnalyzerTests {
    let engine = Fixtures.engine
    func emotion(_ text: String) -> EmotionResult { engine.analyze(text, modules: [.emotion]).emotion! }

    @Test func positiveAndNegativeWords() {
        #expect(emotion("I am so happy today").valence > 0.3)
        #expect(emotion("This is a terrible, awful day").valence < -0.3)
        #expect(emotion("The meeting is at 3 pm in room 4.").valence == 0)
        #expect(emotion("The meeting is at 3 pm in room 4.").dominant == "neutral")
    }

    @Test func negationFlipsValence() {
        let plain = emotion("I am happy with it").valence
        let negated = emotion("I am not happy with it").valence
        #expect(plain > 0)
        #expect(negated < 0)
    }

    @Test func rhetoricalQuestionsAskWhatTheyFeel() {
        // No feeling word in any of them: the question is the complaint, the futility or the worry.
        let exasperated = emotion("How hard is it to put a lid back on the bin?")
        #expect(exasperated.valence < 0)
        #expect(exasperated.dominant == "anger")
        #expect(emotion("Who keeps moving the stapler off my desk?").dominant == "anger")
        #expect(emotion("What if I miss the last train home?").dominant == "fear")
        // An ordinary question is not one.
        #expect(emotion("Could you send the minutes from Tuesday's meeting?").valence == 0)
    }

    @Test func noticesAndTimetablesInformWithoutFeeling() {
        // A notice's feeling words name its subject; a weekday, a month, a numbered place or a
        // clock time marks the register.
        let workshop = emotion("Stress and anxiety workshop, Wednesday evenings in Room 2.")
        #expect(workshop.valence == 0)
        #expect(workshop.dominant == "neutral")
        #expect(workshop.sentences.allSatisfy { $0.valence == 0 && $0.dominant == "neutral" })
        #expect(emotion("Free flu jabs for the over-65s at the surgery on Tuesday.").valence == 0)
        #expect(emotion("Party games for the under-fives, Saturday at 10 am in the church hall.").valence == 0)
        #expect(emotion("Stress and anxiety workshop, 7.30pm in the church hall.").valence == 0)
        #expect(emotion("Stress and anxiety workshop, 19:30 in the church hall.").valence == 0)
        // Without a mark it is not read as a notice.
        #expect(emotion("Stress and anxiety workshop in the church hall.").valence < 0)
        // A writer who speaks (I, we) or asks, or a feeling stronger than a notice's words, keeps it.
        #expect(emotion("I dread Mondays.").valence < 0)
        #expect(emotion("We are so proud of the team, they won on Saturday.").valence > 0)
        #expect(emotion("Does anyone else hate Mondays?").valence < 0)
        #expect(emotion("The hotel on Friday was an absolute disgrace, filthy and rude.").dominant == "disgust")
    }

    @Test func anIntensifyingTailFlipsTheNegationFullyAndCarriesItPastTheTail() {
        // "not … at all" is more negative than "not …" (VADER's ×−0.74 becomes ×−1).
        #expect(emotion("I was not happy at all.").valence < emotion("I was not happy.").valence)
        #expect(emotion("He did not like the food one bit.").valence < emotion("He did not like the food.").valence)
        // The tail's own words do not use up the negation's three-word reach: "worried" is negated.
        #expect(emotion("I am not in the slightest worried.").valence > 0)
        // A tail with no negator before it in its clause negates nothing.
        #expect(emotion("They kept the happy ending at all costs.").valence > 0)
        #expect(emotion("I was not there, but the party was happy at all hours.").valence > 0)
    }

    @Test func butShiftsWeightToTheLaterClause() {
        #expect(emotion("The food was great but the service was terrible").valence < 0)
        #expect(emotion("The service was terrible but the food was great").valence > 0)
    }

    @Test func aTurnWithAnUnmarkedLaterSideGoesAgainstTheEarlierOne() {
        // Nothing in "the lift was out for a week" is negative; the turn says it is.
        #expect(emotion("The staff were lovely, but the lift was out for a week.").valence < 0)
        // Across sentences: an opening "However" weighs what comes after it.
        #expect(emotion("Thanks for sending the plans so quickly. However, the kitchen is on the wrong wall.").valence < 0)
        // A later side that agrees, or outweighs, is left alone.
        #expect(emotion("The starter was good, but the main course was wonderful.").valence > 0.3)
        #expect(emotion("The start was slow, but the ending was brilliant and moving.").valence > 0)
        // ", though …" after a finished clause turns like "but"; an opening "Although" is a concession.
        #expect(emotion("The garden looked lovely, though the fountain had been switched off for good.").valence < 0)
        #expect(emotion("Although the fountain was off, the garden looked lovely.").valence > 0)
    }

    @Test func hedgesTurnFaintPraiseIntoDisappointment() {
        #expect(emotion("The concert was fine.").valence > 0)
        let hedged = emotion("The concert was fine, I guess.")
        #expect(hedged.valence < 0)
        #expect(hedged.dominant == "sadness")
        // Strong praise is not faint.
        #expect(emotion("The concert was amazing and wonderful, I guess.").valence > 0)
    }

    @Test func shoutingWithNothingPositiveIsAnger() {
        let r = emotion("The gate code changed. NOBODY told the tenants. Again.")
        #expect(r.valence < 0)
        #expect(r.dominant == "anger")
        // Capitals with praise stay positive, and acronyms are not shouting.
        #expect(emotion("We got the keys today, BEST feeling!").valence > 0)
        #expect(emotion("The NHS letter came on Tuesday.").valence == 0)
    }

    @Test func noticesHeadingsAndCompoundsCarryNoFeeling() {
        #expect(emotion("Warning: the car park closes at 6pm.").valence == 0)
        #expect(emotion("Happy hour is from 5 to 7.").dominant == "neutral")
        #expect(emotion("The fire drill is on Thursday morning.").valence == 0)
        // The same words as feelings still count.
        #expect(emotion("I was so happy to see you.").valence > 0.3)
        #expect(emotion("The warning came too late and I lost everything.").valence < 0)
    }

    @Test func situationsWithoutFeelingWords() {
        #expect(emotion("Found mould behind the wardrobe and the whole room stinks.").dominant == "disgust")
        #expect(emotion("Two more sleeps until the beach!").dominant == "anticipation")
        #expect(emotion("My brother hasn't come home and his phone goes straight to voicemail.").dominant == "fear")
        #expect(emotion("It could hardly have gone better.").valence > 0)
    }

    @Test func emphasisAmplifies() {
        let base = emotion("This is good").valence
        #expect(emotion("This is very good").valence > base)
        #expect(emotion("This is GOOD").valence > base)
        #expect(emotion("This is good!!!").valence > base)
        #expect(emotion("This is slightly good").valence < emotion("This is very good").valence)
    }

    @Test func emojiAndEmoticonsCount() {
        #expect(emotion("Exam results came back 😢").valence < 0)
        #expect(emotion("see you tomorrow :)").valence > 0)
    }

    @Test func dominantEmotionAndRanges() {
        let r = emotion("I was furious because they lied to me, but I know she meant well.")
        #expect(Emotion.allCases.allSatisfy { (0...1).contains(r.emotions[$0.rawValue]!) })
        #expect((-1...1).contains(r.valence))
        #expect((0...1).contains(r.arousal))
        #expect(r.sentences.count == 1)
        #expect(emotion("I'm terrified of the dark and scared of spiders").dominant == "fear")
        #expect(emotion("I can't wait for the trip next week, I'm so eager!").dominant == "anticipation")
    }
}

struct ReasoningAnalyzerTests {
    let engine = Fixtures.engine
    func reasoning(_ text: String) -> ReasoningResult { engine.analyze(text, modules: [.reasoning]).reasoning! }

    @Test func becauseSplitsConclusionAndPremise() throws {
        let r = reasoning("I stayed home because it was raining.")
        let chain = try #require(r.chains.first)
        #expect(chain.relation == "causal")
        #expect(chain.marker == "because")
        #expect(chain.conclusion == "I stayed home")
        #expect(chain.premises == ["it was raining"])
        #expect(r.patterns["causal"] == 1)
    }

    @Test func sentenceInitialMarkerUsesTheComma() throws {
        let chain = try #require(reasoning("If it rains tomorrow, we will cancel the picnic.").chains.first)
        #expect(chain.relation == "conditional")
        #expect(chain.premises == ["it rains tomorrow"])
        #expect(chain.conclusion == "we will cancel the picnic")
    }

    @Test func markerOpeningASentenceLinksToThePreviousOne() throws {
        let r = reasoning("All the shops were closed. Therefore, we went home hungry.")
        let chain = try #require(r.chains.first)
        #expect(chain.relation == "inferential")
        #expect(chain.premises == ["All the shops were closed"])
        #expect(chain.conclusion == "we went home hungry")
    }

    @Test func inferenceWithoutAConnective() throws {
        let chain = try #require(reasoning("The lights are off. They must have gone to bed.").chains.first)
        #expect(chain.relation == "inferential")
        #expect(chain.premises == ["The lights are off"])
    }

    @Test func trapWordsAreNotArguments() {
        #expect(reasoning("I have lived here since 2010.").chains.isEmpty)
        #expect(reasoning("I'm so tired today.").chains.isEmpty)
        #expect(reasoning("I wonder if she called.").chains.isEmpty)
        #expect(reasoning("We walked along the beach and ate ice cream.").style == "descriptive")
    }

    @Test func chainsLinkIntoDepth() {
        let r = reasoning("It rained all night, so the river rose. Therefore, the bridge was closed.")
        #expect(r.depth >= 2)
        #expect(Set(r.chains.map(\.relation)) == ["causal", "inferential"])
    }
}

struct ValuesAnalyzerTests {
    let engine = Fixtures.engine
    func values(_ text: String) -> ValuesResult { engine.analyze(text, modules: [.values]).values! }

    @Test func rankedWithEvidence() throws {
        let r = values("I volunteer every weekend because helping others and caring for my family matters most.")
        #expect(r.hierarchy.count == 10)
        #expect(r.hierarchy.first?.value == "benevolence")
        #expect(!(r.hierarchy.first?.evidence.isEmpty ?? true))
        #expect(r.hierarchy.map(\.score) == r.hierarchy.map(\.score).sorted(by: >))
        let sum = r.dimensions.values.reduce(0, +)
        #expect(abs(sum - 1) < 0.01)
    }

    @Test func noEvidenceMeansZeroScores() {
        let r = values("The train leaves at nine.")
        #expect(r.hierarchy.allSatisfy { $0.score == 0 && $0.evidence.isEmpty })
    }
}

struct TheoryOfMindAnalyzerTests {
    let engine = Fixtures.engine
    func tom(_ text: String) -> TheoryOfMindResult { engine.analyze(text, modules: [.theoryOfMind]).theoryOfMind! }

    @Test func holdersTheAgentDetectorMisses() {
        // Animals, role nouns with modifiers, quantified groups, and "X's" as "X is".
        #expect(tom("The old fox clearly believes the henhouse is his.").agents.first?.states.first?.type == "belief")
        #expect(tom("Most commuters have no idea the line closes in May.").agents.first?.states.first?.type == "knowledge")
        #expect(tom("The night porter noticed a light on the third floor.").agents.first?.agent == "the night porter")
        #expect(tom("Priya's terrified of the exam results.").agents.first?.states.first?.type == "emotion")
        // Holders named by a modified noun, a quantified group, a possessive phrase or a title,
        // and "X's" read as "X is" across an adverb.
        #expect(tom("Our little boy is terrified of the hand dryers.").agents.first?.agent == "our little boy")
        #expect(tom("Half the office is craving a roast dinner.").agents.first?.agent == "half the office")
        #expect(tom("Next door's builders are planning to start at seven.").agents.first?.agent == "next door's builders")
        #expect(tom("On still nights Aunt Flo could hear the sea.").agents.first?.agent == "aunt flo")
        #expect(tom("Villagers fear the river will flood.").agents.first?.agent == "villagers")
        let brother = tom("My brother's not going to bother with the reunion.").agents.first
        #expect(brother?.agent == "my brother")
        // A state word without a holder in a notice is not a state.
        #expect(tom("The meeting room on the left is for the new interns.").agents.isEmpty)
    }

    @Test func nestedAttributions() throws {
        let r = tom("I think she believes he wants to leave.")
        #expect(r.agents.map(\.agent) == ["i", "she", "he"])
        #expect(r.agents.map { $0.states.first?.type } == ["belief", "belief", "desire"])
        #expect(r.agents[0].states[0].content == "she believes he wants to leave")
        #expect(r.agents[2].states[0].content == "to leave")
        #expect(r.perspectiveTaking > 0.5)
    }

    @Test func negationAndAdjectives() throws {
        let r = tom("He doesn't know I'm here. My mother is afraid of storms.")
        let he = try #require(r.agents.first { $0.agent == "he" })
        #expect(he.states.first?.type == "knowledge")
        #expect(he.states.first?.negated == true)
        let mother = try #require(r.agents.first { $0.agent == "my mother" })
        #expect(mother.states.first?.type == "emotion")
    }

    @Test func namesAndNoSignal() {
        #expect(tom("Maria hopes the train is on time.").agents.first?.agent == "maria")
        #expect(tom("We drove to the coast and ate fish by the harbour.").agents.isEmpty)
    }
}

struct NarrativeAnalyzerTests {
    let engine = Fixtures.engine
    func narrative(_ text: String) -> NarrativeResult { engine.analyze(text, modules: [.narrative]).narrative! }

    @Test func tenseAndPerspective() {
        let past = narrative("Yesterday I walked to the market. I bought apples and went home.")
        #expect(past.tense == "past")
        #expect(past.perspective == "first_person")
        let future = narrative("Tomorrow she will fly to Lisbon. She will visit her aunt.")
        #expect(future.tense == "future")
        #expect(future.perspective == "third_person")
        #expect(narrative("Every morning he feeds the cats and waters the plants.").tense == "present")
    }

    @Test func aReaderAddressedAsYouIsNoNarrator() {
        // Instructions, notices and letters to the reader: the narrator never says I or we.
        #expect(narrative("If the light flashes red, you need to reset it. Hold your finger on the button for ten seconds.").perspective == "third_person")
        #expect(narrative("An engineer will visit your home on Friday. You will be without power for an hour.").perspective == "third_person")
        // "You" beside the narrator's own "I" as a second protagonist is mixed.
        #expect(narrative("You come home and drop your bag in the hall, and I pretend not to see the mud. You tell me about your day.").perspective == "mixed")
    }

    @Test func aPresentTenseUnderAFutureFrameOrInAClauseOfAFutureSentenceIsAPlan() {
        // A schedule or an arrangement: present tense, future frame ("tomorrow" is flagged `future`).
        let scheduled = narrative("The match starts at eight tomorrow.")
        #expect(scheduled.tense == "future")
        #expect(scheduled.events.map(\.tense) == ["future"])
        // The same tense without the frame stays present.
        #expect(narrative("The match starts at eight.").tense == "present")
        // "when I get home" follows its main clause's future.
        let call = narrative("I'll call you when I get home.")
        #expect(call.events.map(\.tense) == ["future", "future"])
        #expect(narrative("I call you when I get home.").events.map(\.tense) == ["present", "present"])
    }

    @Test func theParticipleAfterBeOrBeenIsTheMainVerb() {
        let married = narrative("We have been married for ten years.")
        #expect(married.events.map(\.verb) == ["married"])
        #expect(married.events.map(\.tense) == ["present_perfect"])
        #expect(narrative("You will be amused by it.").events.map(\.verb) == ["amused"])
        #expect(narrative("She had been crying all night.").events.map(\.tense) == ["past_perfect"])
    }

    @Test func aTextThroughPastPresentAndFutureIsMixed() {
        let life = narrative("Last year I lost my job. Now I work from home and I love it. Next month I will start my own company.")
        #expect(Set(life.events.map(\.tense)) == ["past", "present", "future"])
        #expect(life.tense == "mixed")
        // Two tenses with one told once: the main one.
        #expect(narrative("I work from home and I love it. Last year I lost my job.").tense == "present")
    }

    @Test func reorderingCues() throws {
        let r = narrative("We arrived at noon. Before that, we had stopped for coffee.")
        let first = try #require(r.events.first)
        #expect(first.verb == "stopped")
        #expect(first.order == 0)
        #expect(r.events.map(\.index).sorted() == Array(0..<r.events.count))
    }

    @Test func subordinatorsOrderClausesWithinTheirSentence() {
        func story(_ text: String) -> [String] { narrative(text).events.map(\.verb) }
        // "before" opening a clause puts that clause after the rest of its sentence, not the
        // sentence before the others; "after", "once" and "since" put their clause first.
        #expect(
            story("A fox slipped through the fence. It grabbed a crust and vanished before the dog noticed.") == ["slipped", "grabbed", "vanished", "noticed"])
        #expect(story("Before I left, I locked the door.") == ["locked", "left"])
        #expect(story("I washed up after we ate.") == ["ate", "washed"])
        // "since" opening a clause: that clause came first ("has emptied since the mill closed").
        #expect(story("The town has emptied since the mill closed.") == ["closed", "emptied"])
        // "before that" still moves its sentence back.
        #expect(story("We arrived at noon. Before that, we stopped for coffee.").first == "stopped")
        // "by" and a time keeps a past perfect in story order; "by the time" and a clause does not.
        #expect(story("The bakery opened at six. By nine every croissant had gone.") == ["opened", "gone"])
        #expect(story("We ran to the cinema. By the time we arrived, the film had started.").first == "started")
    }

    @Test func wordsThatLookLikeVerbsAreNotEvents() {
        func verbs(_ text: String) -> [String] { narrative(text).events.map(\.verb) }
        // numbers and what they count; a plural after a quantifier; a past form after a verb;
        // a bare form after an object; a word floating between an auxiliary and its verb.
        #expect(verbs("Two hundred years ago a boat drifted ashore.") == ["drifted"])
        #expect(verbs("Most nights I read to my son.") == ["read"])
        #expect(verbs("On Monday we will eat grilled sardines.") == ["eat"])
        #expect(verbs("We will get married in June.") == ["get"])
        #expect(verbs("I will try not to look lost.") == ["try"])
        #expect(verbs("We'll both take dance lessons.") == ["take"])
        #expect(verbs("For years we had only nodded at each other.") == ["nodded"])
        // a plural noun after a capitalised gerund, participle, weekday or possessive, or with a
        // noun's suffix, is no verb of a name before it.
        #expect(verbs("Training sessions start at nine.").isEmpty)
        #expect(verbs("Opening hours are nine to five.").isEmpty)
        #expect(verbs("Children's activities follow in the afternoon.").isEmpty)
        #expect(verbs("Hearing this, the man smiled.") == ["smiled"])
        // what stays an event: a past form after a bare auxiliary, a plural verb after a subject.
        #expect(verbs("The dog must have got out again.").contains("got"))
        #expect(verbs("Her grandson manages the farm.") == ["manages"])
        #expect(verbs("Anna runs the shop.") == ["runs"])
    }

    @Test func statesTellTheTenseButAreNotEvents() {
        let r = narrative("The house was quiet. Then the phone rang and Gran answered it.")
        #expect(r.events.map(\.verb) == ["rang", "answered"])
        // Positions and story order count the events only.
        #expect(r.events.map(\.index) == [0, 1])
        #expect(r.events.map(\.order) == [0, 1])
        // A text of states alone has no event, and its states still give its tense.
        let still = narrative("The old mill is empty now and has no roof.")
        #expect(still.events.isEmpty)
        #expect(still.tense == "present")
        #expect(narrative("My grandmother was a nurse.").tense == "past")
    }

    @Test func arcHasFiveSegments() {
        let r = narrative("The old man walked into the village at dawn. He thought about his son. Then he suddenly realized why the bells were ringing.")
        #expect(r.arc.staging.count == 5)
        #expect(r.arc.plotProgression.count == 5)
        #expect(r.arc.cognitiveTension.count == 5)
        #expect(r.arc.cognitiveTension.reduce(0, +) > 0)
        #expect(r.characters.contains("he"))
    }

    @Test func charactersFromRoleNounsModifiersAndPossessives() {
        // Role nouns with or without a determiner, modified nouns, possessives, titles before names.
        let r = narrative(
            "A fisherman pulled a bottle from the sea. The old man fed the pigeons at my aunt's farm. "
                + "The bride and the mayor argued while thieves robbed the villagers. Daniel's wife laughed. Aunt Flo slept.")
        #expect(r.characters == ["fisherman", "old man", "my aunt", "bride", "mayor", "thieves", "villagers", "daniel's wife", "aunt flo"])
        // "a fisherman" and "the fisherman" are one character; compounds stay whole.
        #expect(narrative("A fisherman waved. Later the fisherman sang. The police officer ran.").characters == ["fisherman", "police officer"])
        // What is not a character: a verb between the determiner and a role noun after "that", a
        // modified bare plural that the noun-phrase reading owns, and a plural that is not a person.
        #expect(narrative("I said that made teachers cry.").characters == ["i"])
        #expect(narrative("The buses were late again.").characters.isEmpty)
        // A contraction opening a sentence is not a name's possessive ("It's old men who …").
        #expect(!narrative("It's old men who fish here.").characters.contains { $0.hasPrefix("it") })
    }
}

struct EngineTests {
    @Test func deterministicAndComplete() throws {
        let text = "I was furious because they lied to me, but I know she meant well."
        let a = Fixtures.engine.analyze(text)
        let b = Fixtures.engine.analyze(text)
        #expect(a == b)
        #expect(a.modules == Module.allCases)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(a)) as! [String: Any]
        #expect(Set(json.keys) == ["emotion", "reasoning", "values", "theory_of_mind", "narrative"])
    }

    @Test func chosenModulesOnly() {
        let r = Fixtures.engine.analyze("hello", modules: [.values, .narrative])
        #expect(r.modules == [.values, .narrative])
    }

    @Test(arguments: ["", "   ", "!!!", "😀", String(repeating: "a", count: 5000), "\u{0}\u{1}\u{7F}"])
    func degenerateInputsDoNotCrash(text: String) {
        let r = Fixtures.engine.analyze(text)
        #expect(r.modules.count == 5)
    }
}
