// ol-ext ships no TypeScript declarations; this covers what the app uses.
declare module 'ol-ext/interaction/Transform' {
  import Pointer from 'ol/interaction/Pointer.js';
  import type Feature from 'ol/Feature.js';
  import type Collection from 'ol/Collection.js';
  import type VectorLayer from 'ol/layer/Vector.js';
  export default class Transform extends Pointer {
    constructor(options?: Record<string, unknown>);
    select(feature: Feature | null, add?: boolean): void;
    setSelection(features: Feature[]): void;
    getFeatures(): Collection<Feature>;
    setCenter(c?: number[]): void;
    overlayLayer_: VectorLayer;
  }
}
