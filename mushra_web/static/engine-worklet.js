// The playback engine: every source of a trial on one shared playhead, on the audio thread.
// Commands are applied at an exact frame (now + lead); switching is a raised-cosine crossfade whose gains sum to 1;
// the loop seam crossfades the end of the region into its start, so the playhead never jumps audibly.
/* global currentFrame, sampleRate, registerProcessor, AudioWorkletProcessor */

class MushraEngine extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.channels = o.channels || 1;
    this.xfade = Math.max(1, Math.round((o.crossfadeMs || 5) * sampleRate / 1000));
    this.lead = Math.round(0.02 * sampleRate);
    this.sources = [];
    this.length = 0;
    this.pos = 0;
    this.cur = -1;      // source heard now (-1 = silence)
    this.prev = -1;     // source fading out
    this.k = this.xfade; // frames into the current crossfade (xfade = done)
    this.region = null; // {start, end} when a loop region is on
    this.pending = [];
    this.tap = false;
    this.quanta = 0;
    this.port.onmessage = (e) => this.receive(e.data);
  }

  receive(msg) {
    if (msg.cmd === 'load') {
      this.sources = msg.sources;
      this.length = msg.length;
      this.pos = 0; this.cur = -1; this.prev = -1; this.k = this.xfade; this.region = null; this.pending = [];
      this.port.postMessage({type: 'loaded', frame: currentFrame});
      return;
    }
    if (msg.cmd === 'tap') { this.tap = !!msg.on; return; }
    const frame = currentFrame + this.lead;
    this.pending.push({frame, msg});
    this.port.postMessage({type: 'scheduled', cmd: msg.cmd, source: msg.source, frame, id: msg.id});
  }

  apply(msg) {
    if (msg.cmd === 'play' || msg.cmd === 'stop') {
      const to = msg.cmd === 'stop' ? -1 : msg.source;
      if (to === this.cur) return;
      // a switch during a crossfade starts from what is heard now: the louder of the two fading sources
      this.prev = (this.k < this.xfade && this.k < this.xfade / 2) ? this.prev : this.cur;
      this.cur = to;
      this.k = 0;
    } else if (msg.cmd === 'loop') {
      if (msg.enabled && msg.end - msg.start > 2 * this.xfade) {
        this.region = {start: msg.start, end: Math.min(msg.end, this.length)};
        if (this.pos < this.region.start || this.pos >= this.region.end) this.pos = this.region.start;
      } else {
        this.region = null;
      }
    } else if (msg.cmd === 'seek') {
      this.pos = Math.max(0, Math.min(this.length - 1, msg.frame | 0));
    }
  }

  bounds() {
    return this.region || {start: 0, end: this.length};
  }

  // the sample of source s at playhead p, with the loop seam crossfaded into the region's start
  sample(s, ch, p, b) {
    if (s < 0) return 0;
    const data = this.sources[s][Math.min(ch, this.sources[s].length - 1)];
    const seamStart = b.end - this.xfade;
    if (p >= seamStart) {
      const w = (p - seamStart) / this.xfade;
      const a = 0.5 - 0.5 * Math.cos(Math.PI * w);
      return (1 - a) * data[p] + a * data[b.start + (p - seamStart)];
    }
    return data[p];
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    const playing = this.cur >= 0 || this.k < this.xfade;
    for (let i = 0; i < n; i++) {
      const f = currentFrame + i;
      while (this.pending.length && this.pending[0].frame <= f) this.apply(this.pending.shift().msg);
      if (!this.length || (this.cur < 0 && this.k >= this.xfade)) {
        for (let ch = 0; ch < out.length; ch++) out[ch][i] = 0;
        continue;
      }
      const b = this.bounds();
      const g = this.k < this.xfade ? 0.5 - 0.5 * Math.cos(Math.PI * this.k / this.xfade) : 1;
      for (let ch = 0; ch < out.length; ch++) {
        let v = g * this.sample(this.cur, ch, this.pos, b);
        if (g < 1) v += (1 - g) * this.sample(this.prev, ch, this.pos, b);
        out[ch][i] = v;
      }
      if (this.k < this.xfade) this.k++;
      this.pos++;
      if (this.pos >= b.end) this.pos = b.start + this.xfade;
    }
    this.quanta++;
    if (this.tap) {
      this.port.postMessage({type: 'tap', frame: currentFrame, ch: out.map((c) => c.slice())});
    }
    if (this.quanta % 4 === 0) {
      this.port.postMessage({type: 'pos', frame: currentFrame, pos: this.pos, cur: this.cur, playing});
    }
    return true;
  }
}

registerProcessor('mushra-engine', MushraEngine);
