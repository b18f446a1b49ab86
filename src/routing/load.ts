// The routing data a gateway (or an ops command) works with, loaded from the files the
// configuration names: the address register snapshot, overrides, postcode and address indexes.
import type { GatewayConfig } from '../config/config.js';
import { loadAddressIndexes } from './addressIndex/indexFile.js';
import { AddressRegister } from './addressRegister.js';
import { loadOverrides } from './overrides.js';
import { loadPostcodeIndex } from './postcodeIndex.js';
import type { RoutingData } from './resolveBydel.js';
import type { RoutingContext } from './route.js';

/** What decides the bydel (overrides, postcodes, address indexes): all `routing explain` needs. */
export function loadRoutingData(config: GatewayConfig): RoutingData {
  return {
    overrides: loadOverrides(config.routing.overridesFile),
    postcodes: loadPostcodeIndex(config.routing.postcodeIndexFile),
    postcodeMinShare: config.routing.postcodeMinShare,
    addressIndexes: loadAddressIndexes(config.routing.addressIndexFiles ?? []),
  };
}

/** Everything routing needs, the address register and the service per message type included. */
export function loadRouting(config: GatewayConfig): RoutingContext {
  const register = AddressRegister.load(config.routing.addressRegisterFile);
  return {
    ...loadRoutingData(config),
    register,
    routeByBydel: new Set(config.routing.routeByBydel ?? register.osloKommuneHerIds()),
    serviceByType: config.routing.serviceByType,
  };
}
